"""activity_events: what the activities service reported about a member, for their timeline.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations import uuid_column

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "activity_events",
        uuid_column("event_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        uuid_column("activity_id", nullable=True),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("aggregate_version", sa.Integer, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("data", JSONB, nullable=False),
    )
    op.create_index("ix_activity_events_member", "activity_events", ["member_id", "occurred_at"])


def downgrade() -> None:
    op.drop_table("activity_events")
