"""The membership database, beside the event-sourcing core tables (``shared.tables``).

Three kinds of table, and the difference matters:
- **read models** (projections of this service's own events): thrown away and rebuilt from the
  event store by ``projections.rebuild_read_models``;
- **claims read models**: built from ``claims.events`` by the claims consumer (rebuilt by
  replaying that topic, never from our own store);
- **the vault**: personal and health data that must never be in an event (national ID, phone,
  card number, injury details). It is the source of truth for those values, so no rebuild touches
  it. Values are AES-GCM encrypted with the row's id bound in; lookups go through a keyed blind
  index, never the plaintext.
- **paper receipts** (``paper_receipts``): the receipt of each enrolment a supervisor recorded
  late from paper. Its reference is not personal but is kept off Kafka, so this table is its
  only copy and no rebuild touches it (plain text: it is a receipt number, not an identifier).
- the **plan catalogue** (``plans``): reference data seeded by the first migration and kept up to
  date from ``PlanDefined`` events (upserts, so a replay never loses the seeded rows).

Migrations create exactly these tables; ``tests/integration/membership`` checks they agree.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

# --- read models of our own events ------------------------------------------------------------

unions = sa.Table(
    "unions",
    metadata,
    sa.Column("union_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("level", sa.Text, nullable=False),
    sa.Column("parent_id", UUID(as_uuid=True), nullable=True, index=True),
    sa.Column("registered_at", TS, nullable=False),
)

members = sa.Table(
    "members",
    metadata,
    sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("union_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("full_name", sa.Text, nullable=False),
    sa.Column("gender", sa.Text, nullable=False),
    sa.Column("birth_date", sa.Date, nullable=False),
    sa.Column("joined_on", sa.Date, nullable=False),
    sa.Column("employer", sa.Text, nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # active | left
    sa.Column("left_on", sa.Date, nullable=True),
    sa.Column("leave_reason", sa.Text, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),  # the Member stream's version
    sa.Column("updated_at", TS, nullable=False),
)

cards = sa.Table(
    "cards",
    metadata,
    sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("seq", sa.Integer, primary_key=True),  # version of the CardIssued event
    sa.Column("card_last4", sa.Text, nullable=False),
    sa.Column("issued_on", sa.Date, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # active | cancelled
    sa.Column("cancelled_on", sa.Date, nullable=True),
    sa.Column("cancel_reason", sa.Text, nullable=True),
)

enrollments = sa.Table(
    "enrollments",
    metadata,
    sa.Column("enrollment_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("union_id", UUID(as_uuid=True), nullable=False),  # the member's union when enrolled
    sa.Column("plan_code", sa.Text, nullable=False),
    sa.Column("shares", sa.Integer, nullable=False),
    sa.Column("price_level", sa.Numeric(12, 2), nullable=True),
    sa.Column("starts_on", sa.Date, nullable=False),
    sa.Column("ends_on", sa.Date, nullable=False),
    sa.Column("status", sa.Text, nullable=False),  # active | cancelled
    sa.Column("cancelled_on", sa.Date, nullable=True),
    sa.Column("cancel_reason", sa.Text, nullable=True),
    sa.Column("enrolled_at", TS, nullable=False),
    sa.Index("ix_enrollments_starts_on_plan", "starts_on", "plan_code"),
)

injury_reports = sa.Table(
    "injury_reports",
    metadata,
    sa.Column("report_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("occurred_on", sa.Date, nullable=False),
    sa.Column("work_related", sa.Boolean, nullable=False),
    sa.Column("traffic_accident", sa.Boolean, nullable=False),
    sa.Column("severity", sa.Text, nullable=False),
    sa.Column("reported_on", sa.Date, nullable=False),
    sa.Column("member_version", sa.Integer, nullable=False),
    sa.Column("reported_at", TS, nullable=False),
)

#: Every event of a member's own history (Member stream and their injury reports).
member_timeline = sa.Table(
    "member_timeline",
    metadata,
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("aggregate_type", sa.Text, nullable=False),
    sa.Column("aggregate_id", sa.Text, nullable=False),
    sa.Column("aggregate_version", sa.Integer, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("data", JSONB, nullable=False),
    sa.Index("ix_member_timeline_member", "member_id", "occurred_at"),
)

# --- the plan catalogue -----------------------------------------------------------------------

plans = sa.Table(
    "plans",
    metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("benefit", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("definition", JSONB, nullable=False),  # the whole shared.contracts.plans.Plan
    sa.Column("position", sa.Integer, nullable=False),  # catalogue order
    #: The plan stream's version (PlanDefined events so far; 0 for a seeded, never-edited plan).
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
    sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
)

# --- read models of claims.events -------------------------------------------------------------

member_claims = sa.Table(
    "member_claims",
    metadata,
    sa.Column("claim_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("report_id", UUID(as_uuid=True), nullable=True, index=True),
    sa.Column("plan_code", sa.Text, nullable=False),
    sa.Column("benefit", sa.Text, nullable=False),
    sa.Column("enrollment_id", UUID(as_uuid=True), nullable=True),
    sa.Column("status", sa.Text, nullable=False),  # filed | documents_complete | approved | rejected | paid
    sa.Column("amount", sa.Numeric(14, 2), nullable=True),
    sa.Column("required_documents", JSONB, nullable=False),
    sa.Column("missing_documents", JSONB, nullable=True),
    sa.Column("updated_at", TS, nullable=False),
)

claim_events = sa.Table(
    "claim_events",
    metadata,
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=True),
    sa.Column("claim_id", UUID(as_uuid=True), nullable=True),
    sa.Column("report_id", UUID(as_uuid=True), nullable=True, index=True),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("aggregate_version", sa.Integer, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("data", JSONB, nullable=False),
    sa.Index("ix_claim_events_member", "member_id", "occurred_at"),
)

#: What the activities service reported about a member (activities.events): registrations,
#: places, attendance. Not rebuilt from this service's store (like claim_events).
activity_events = sa.Table(
    "activity_events",
    metadata,
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False),
    sa.Column("activity_id", UUID(as_uuid=True), nullable=True),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("aggregate_version", sa.Integer, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("data", JSONB, nullable=False),
    sa.Index("ix_activity_events_member", "member_id", "occurred_at"),
)

#: A member's labour-dispute mediation cases (mediation.events, migration 0008): the case's
#: number, category, where it stands and its dates. Never an amount of money, the mediator or
#: any text (claim, terms, reasons, the arbitration body): those stay in the mediation service.
#: Keyed by case: later case events carry only ``case_id``, and this row maps it to the member.
mediation_cases = sa.Table(
    "mediation_cases",
    metadata,
    sa.Column("case_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("case_number", sa.Text, nullable=False),
    sa.Column("category", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("tier", sa.Text, nullable=False),
    sa.Column("received_on", sa.Date, nullable=False),
    sa.Column("mediation_deadline", sa.Date, nullable=False),
    sa.Column("arbitration_limit", sa.Date, nullable=False),
    sa.Column("closed_on", sa.Date, nullable=True),
    #: The case stream's version last applied here.
    sa.Column("version", sa.Integer, nullable=False),
)

#: The member's timeline entries of those cases, with the chosen fields only (see above).
mediation_events = sa.Table(
    "mediation_events",
    metadata,
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False),
    sa.Column("case_id", UUID(as_uuid=True), nullable=False),
    sa.Column("occurred_at", TS, nullable=False),
    sa.Column("aggregate_version", sa.Integer, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("data", JSONB, nullable=False),
    sa.Index("ix_mediation_events_member", "member_id", "occurred_at"),
)

# --- the vault --------------------------------------------------------------------------------

member_identities = sa.Table(
    "member_identities",
    metadata,
    sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("national_id_index", sa.Text, nullable=False, unique=True),  # HMAC: one member per ID
    sa.Column("national_id_enc", sa.Text, nullable=False),
    sa.Column("phone_enc", sa.Text, nullable=True),
    #: HMAC of the phone (not unique: a household may share one); kept with every change.
    sa.Column("phone_index", sa.Text, nullable=True, index=True),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
)

card_numbers = sa.Table(
    "card_numbers",
    metadata,
    sa.Column("card_number_index", sa.Text, primary_key=True),  # HMAC: a card number has one owner
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("card_number_enc", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
)

injury_details = sa.Table(
    "injury_details",
    metadata,
    sa.Column("report_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("description_enc", sa.Text, nullable=False),
    sa.Column("diagnosis_enc", sa.Text, nullable=False),
    sa.Column("hospital_enc", sa.Text, nullable=True),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
)

# --- paper receipts ---------------------------------------------------------------------------

#: One row per paper enrolment, written in the transaction that records its ``PlanEnrolled``.
paper_receipts = sa.Table(
    "paper_receipts",
    metadata,
    sa.Column("enrollment_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("receipt_reference", sa.Text, nullable=False),  # as the supervisor typed it
    #: One receipt pays for one enrolment: ``PaperReceipt.key``, the reference however typed.
    #: NULL once released: the enrolment was cancelled from its first day, so it never covered
    #: a day and the receipt may pay for the corrected one.
    sa.Column("receipt_key", sa.Text, nullable=True, index=True, unique=True),
    sa.Column("released_on", sa.Date, nullable=True),
    sa.Column("paid_on", sa.Date, nullable=False),
    sa.Column("recorded_on", sa.Date, nullable=False),
    #: The supervisor's token subject (who vouched for the receipt).
    sa.Column("recorded_by", sa.Text, nullable=False),
    sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
)

#: Tables a rebuild from our own event store empties and refills.
READ_MODEL_TABLES = (unions, members, cards, enrollments, injury_reports, member_timeline)
