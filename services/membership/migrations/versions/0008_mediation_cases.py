"""mediation_cases and mediation_events: a member's mediation cases (from mediation.events) for
their timeline, with chosen non-confidential fields only (no amounts, no mediator, no text).

Revision ID: 0008
Revises: 0007
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB, UUID

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "mediation_cases",
        sa.Column("case_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("member_id", UUID(as_uuid=True), nullable=False),
        sa.Column("case_number", sa.Text, nullable=False),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        sa.Column("received_on", sa.Date, nullable=False),
        sa.Column("mediation_deadline", sa.Date, nullable=False),
        sa.Column("arbitration_limit", sa.Date, nullable=False),
        sa.Column("closed_on", sa.Date, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
    )
    op.create_index("ix_mediation_cases_member_id", "mediation_cases", ["member_id"])
    op.create_table(
        "mediation_events",
        sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("member_id", UUID(as_uuid=True), nullable=False),
        sa.Column("case_id", UUID(as_uuid=True), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("aggregate_version", sa.Integer, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("data", JSONB, nullable=False),
    )
    op.create_index("ix_mediation_events_member", "mediation_events", ["member_id", "occurred_at"])


def downgrade() -> None:
    op.drop_table("mediation_events")
    op.drop_index("ix_mediation_cases_member_id", table_name="mediation_cases")
    op.drop_table("mediation_cases")
