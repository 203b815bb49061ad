"""Core event-sourcing and consumer tables, the member read model, residents' contacts and the
activities read models.

Written out table by table (never from services/activities/tables.py): this revision creates the
schema of *this* revision forever. A test compares the migrated schema with tables.py.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations import (
    create_consumer_tables,
    create_core_tables,
    drop_consumer_tables,
    drop_core_tables,
    uuid_column,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    bind = op.get_bind()
    create_core_tables(bind)
    create_consumer_tables(bind)
    op.create_table(
        "known_members",
        uuid_column("member_id", primary_key=True),
        uuid_column("union_id", nullable=False),
        sa.Column("joined_on", sa.Date, nullable=False),
        sa.Column("left_on", sa.Date, nullable=True),
    )
    op.create_table(
        "resident_contacts",
        uuid_column("registration_id", primary_key=True),
        sa.Column("resident_ref", sa.Text, nullable=False),
        sa.Column("full_name_enc", sa.Text, nullable=False),
        sa.Column("phone_enc", sa.Text, nullable=False),
    )
    op.create_index("ix_resident_contacts_resident_ref", "resident_contacts", ["resident_ref"])
    op.create_table(
        "activities",
        uuid_column("activity_id", primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("venue", sa.Text, nullable=False),
        sa.Column("capacity", sa.Integer, nullable=False),
        sa.Column("audience", sa.Text, nullable=False),
        sa.Column("child_age_min", sa.Integer, nullable=True),
        sa.Column("child_age_max", sa.Integer, nullable=True),
        sa.Column("registration_opens_at", TS, nullable=True),
        sa.Column("registration_closes_at", TS, nullable=True),
        uuid_column("union_id", nullable=True),
        sa.Column("partner", JSONB, nullable=True),
        sa.Column("sessions", JSONB, nullable=False, server_default="[]"),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("registration_window_closed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("cancel_reason", sa.Text, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_activities_kind", "activities", ["kind"])
    op.create_index("ix_activities_starts_at", "activities", ["starts_at"])
    op.create_index("ix_activities_union_id", "activities", ["union_id"])
    op.create_table(
        "registrations",
        uuid_column("registration_id", primary_key=True),
        uuid_column("activity_id", nullable=False),
        uuid_column("session_id", nullable=True),
        uuid_column("member_id", nullable=True),
        sa.Column("resident_ref", sa.Text, nullable=True),
        uuid_column("member_union_id", nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("waitlist_seq", sa.Integer, nullable=True),
        sa.Column("ever_waitlisted", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("ever_confirmed", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("children_ages", JSONB, nullable=False, server_default="[]"),
        sa.Column("registered_at", TS, nullable=False),
        sa.Column("checked_in_at", TS, nullable=True),
        sa.Column("cancelled_at", TS, nullable=True),
        sa.Column("cancel_reason", sa.Text, nullable=True),
    )
    op.create_index("ix_registrations_member_id", "registrations", ["member_id"])
    op.create_index("ix_registrations_activity", "registrations", ["activity_id", "status", "waitlist_seq"])
    op.create_table(
        "feedback",
        uuid_column("registration_id", primary_key=True),
        uuid_column("activity_id", nullable=False),
        sa.Column("rating", sa.Integer, nullable=False),
        sa.Column("comment", sa.Text, nullable=True),
        sa.Column("submitted_at", TS, nullable=False),
    )
    op.create_index("ix_feedback_activity_id", "feedback", ["activity_id"])
    op.create_table(
        "volunteers",
        uuid_column("activity_id", primary_key=True),
        uuid_column("member_id", primary_key=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("assigned_on", sa.Date, nullable=False),
    )
    op.create_table(
        "interests",
        uuid_column("interest_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("registered_on", sa.Date, nullable=False),
        sa.Column("registered_at", TS, nullable=False),
        uuid_column("notified_activity_id", nullable=True),
    )
    op.create_index("ix_interests_open", "interests", ["kind", "member_id"])


def downgrade() -> None:
    for table in ("interests", "volunteers", "feedback", "registrations", "activities"):
        op.drop_table(table)
    op.drop_table("resident_contacts")
    op.drop_table("known_members")
    bind = op.get_bind()
    drop_consumer_tables(bind)
    drop_core_tables(bind)
