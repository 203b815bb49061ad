"""The mediation service's tables. Read models (``READ_MODEL_TABLES``) are rebuilt from the event
store; the vault tables (encrypted parties, texts, minutes), the case counter and the prefixes are not: what
they hold never is in an event."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

# --- from membership.events (consumer ``mediation.unions``) ---------------------------------------

unions = sa.Table(
    "unions",
    metadata,
    sa.Column("union_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("parent_id", UUID(as_uuid=True), nullable=True),
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("union_id", UUID(as_uuid=True), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
)

# --- stations: the case-number prefix staff chose, and the counter per station and year -----------

stations = sa.Table(
    "stations",
    metadata,
    sa.Column("union_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("case_prefix", sa.Text, nullable=False),
)

#: Every prefix a station has used or set, owned by that station for good (migration 0004):
#: numbers are counted per station, so one prefix at two stations would issue a number twice.
case_prefixes = sa.Table(
    "case_prefixes",
    metadata,
    sa.Column("prefix", sa.Text, primary_key=True),
    sa.Column("union_id", UUID(as_uuid=True), nullable=False),
    sa.Index("ix_case_prefixes_union_id", "union_id"),
)

case_counters = sa.Table(
    "case_counters",
    metadata,
    sa.Column("station_union_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("year", sa.Integer, primary_key=True),
    sa.Column("last", sa.Integer, nullable=False),
)

# --- read models of our own events ---------------------------------------------------------------

cases = sa.Table(
    "cases",
    metadata,
    sa.Column("case_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("case_number", sa.Text, nullable=False, unique=True),
    sa.Column("station_union_id", UUID(as_uuid=True), nullable=False),
    sa.Column("party", sa.Text, nullable=False),
    sa.Column("member_id", UUID(as_uuid=True), nullable=True),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("amount_claimed", sa.Numeric(12, 2), nullable=True),
    sa.Column("learned_on", sa.Date, nullable=False),
    sa.Column("received_on", sa.Date, nullable=False),
    sa.Column("mediation_deadline", sa.Date, nullable=False),
    sa.Column("arbitration_limit", sa.Date, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("tier", sa.Text, nullable=False),
    sa.Column("handling_union_id", UUID(as_uuid=True), nullable=False),
    #: Every union that has handled the case: each of them keeps seeing it.
    sa.Column("handled_by", ARRAY(UUID(as_uuid=True)), nullable=False),
    sa.Column("employer_refused_on", sa.Date, nullable=True),
    sa.Column("agreed_on", sa.Date, nullable=True),
    sa.Column("agreed_amount", sa.Numeric(12, 2), nullable=True),
    sa.Column("agreement_due_on", sa.Date, nullable=True),
    sa.Column("agreed_tier", sa.Text, nullable=True),
    sa.Column("fulfilled_on", sa.Date, nullable=True),
    sa.Column("amount_paid", sa.Numeric(12, 2), nullable=True),
    sa.Column("referred_to", sa.Text, nullable=True),
    sa.Column("closed_on", sa.Date, nullable=True),
    sa.Column("deadline_passed_on", sa.Date, nullable=True),
    sa.Column("limit_near_on", sa.Date, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Index("ix_cases_handling_union_id", "handling_union_id", "status"),
    sa.Index("ix_cases_station_union_id", "station_union_id"),
    sa.Index("ix_cases_member_id", "member_id"),
)

case_history = sa.Table(
    "case_history",
    metadata,
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("case_id", UUID(as_uuid=True), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("data", JSONB, nullable=False),
    sa.Index("ix_case_history_case", "case_id", "version"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("session_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("case_id", UUID(as_uuid=True), nullable=False),
    sa.Column("room_id", UUID(as_uuid=True), nullable=False),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False),
    sa.Column("mediator", sa.Text, nullable=False),
    sa.Column("parties_present", JSONB, nullable=False),
    sa.Column("minutes_recorded", sa.Boolean, nullable=False),
    #: Set by SessionCancelled (migration 0002): the session was called off and its time freed.
    sa.Column("cancelled_on", sa.Date, nullable=True),
    sa.Index("ix_sessions_case", "case_id"),
    sa.Index("ix_sessions_room", "room_id", "starts_at"),
)

READ_MODEL_TABLES = (cases, case_history, sessions)

# --- the vault: never in an event, never rebuilt ------------------------------------------------

case_parties = sa.Table(
    "case_parties",
    metadata,
    sa.Column("case_id", UUID(as_uuid=True), primary_key=True),
    #: A worker who is not a member: encrypted (FieldCipher), read back only for staff.
    sa.Column("worker_name", sa.Text, nullable=True),
    sa.Column("worker_phone", sa.Text, nullable=True),
    sa.Column("employer_name", sa.Text, nullable=False),
    sa.Column("employer_credit_code", sa.Text, nullable=True),
    sa.Column("claim_text", sa.Text, nullable=False),
)

#: Texts staff typed with an outcome (agreement terms, reasons), encrypted, by case version.
case_texts = sa.Table(
    "case_texts",
    metadata,
    sa.Column("case_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("field", sa.Text, primary_key=True),
    sa.Column("ciphertext", sa.Text, nullable=False),
)

#: Session minutes: encrypted under the KeyRing (key id in the ciphertext), read only after the
#: audit trail recorded the attempt.
minutes = sa.Table(
    "minutes",
    metadata,
    sa.Column("session_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("case_id", UUID(as_uuid=True), nullable=False),
    sa.Column("ciphertext", sa.Text, nullable=False),
    sa.Column("recorded_by", sa.Text, nullable=False),
    sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
)
