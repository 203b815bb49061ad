"""The claims service's read models (the event store itself is in shared.tables)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = sa.MetaData()

#: The plan catalogue as this service last heard it (seeded, then kept by ``PlanDefined``).
plans = sa.Table(
    "plans",
    metadata,
    sa.Column("code", sa.Text, primary_key=True),
    sa.Column("body", JSONB, nullable=False),
    #: The plan stream's version applied here (0: the seeded default, never edited).
    sa.Column("version", sa.Integer, nullable=False, server_default="0"),
)

# --- coverage: built only from membership.events ---------------------------------------------

coverage_members = sa.Table(
    "coverage_members",
    metadata,
    sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("joined_on", sa.Date, nullable=True),
    sa.Column("left_on", sa.Date, nullable=True),
    #: Member-stream versions of the facts (here and below): a report is decided on what the
    #: member's stream held at its ``member_version`` (None: applied before they were kept).
    sa.Column("left_version", sa.Integer, nullable=True),
    #: Highest Member-stream version applied: an injury report names the version it needs.
    sa.Column("seen_version", sa.Integer, nullable=False, server_default="0"),
)

coverage_cards = sa.Table(
    "coverage_cards",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("card_last4", sa.Text, nullable=False),
    sa.Column("issued_on", sa.Date, nullable=False),
    sa.Column("cancelled_on", sa.Date, nullable=True),
    sa.Column("issued_version", sa.Integer, nullable=True),
    sa.Column("cancelled_version", sa.Integer, nullable=True),
)

coverage_enrollments = sa.Table(
    "coverage_enrollments",
    metadata,
    sa.Column("enrollment_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("plan_code", sa.Text, nullable=False),
    sa.Column("shares", sa.Integer, nullable=False),
    sa.Column("starts_on", sa.Date, nullable=False),
    sa.Column("ends_on", sa.Date, nullable=False),
    sa.Column("cancelled_on", sa.Date, nullable=True),
    #: The day membership recorded the enrolment (None: recorded before it was on the event).
    sa.Column("recorded_on", sa.Date, nullable=True),
    #: Its version in the member's stream: later than a report's ``member_version``, it was
    #: recorded after that report (None: applied before this column existed).
    sa.Column("recorded_version", sa.Integer, nullable=True),
    sa.Column("cancelled_version", sa.Integer, nullable=True),
)

#: Injury reports that arrived before the member events they depend on.
pending_reports = sa.Table(
    "pending_reports",
    metadata,
    sa.Column("report_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("needed_version", sa.Integer, nullable=False),
    sa.Column("injury", JSONB, nullable=False),
    sa.Column("correlation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("causation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("received_at", sa.DateTime(timezone=True), server_default=sa.func.now()),
    #: The report's trace (W3C context of its reaction's span; NULL while tracing is off): the
    #: decision, taken later, continues it (shared/tracing.py ``continued``).
    sa.Column("trace_context", JSONB, nullable=True),
)

# --- this service's own state, projected inline from its own events --------------------------

claims = sa.Table(
    "claims",
    metadata,
    sa.Column("claim_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("report_id", UUID(as_uuid=True), nullable=True, index=True),
    sa.Column("plan_code", sa.Text, nullable=False),
    sa.Column("benefit", sa.Text, nullable=False),
    sa.Column("enrollment_id", UUID(as_uuid=True), nullable=True),
    sa.Column("status", sa.Text, nullable=False, index=True),
    sa.Column("required_documents", JSONB, nullable=False),
    sa.Column("received_documents", JSONB, nullable=False, server_default="[]"),
    sa.Column("missing_documents", JSONB, nullable=False),
    sa.Column("approved_amount", sa.Numeric(12, 2), nullable=True),
    sa.Column("paid_amount", sa.Numeric(12, 2), nullable=True),
    sa.Column("rejection_reason", sa.Text, nullable=True),
    sa.Column("incident_on", sa.Date, nullable=False),
    sa.Column("filed_on", sa.Date, nullable=False),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
)

report_decisions = sa.Table(
    "report_decisions",
    metadata,
    sa.Column("report_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False),
    sa.Column("reasons", JSONB, nullable=False),
    sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
)
