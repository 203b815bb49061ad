"""Core event-sourcing and consumer tables, the access audit trail, the counseling tables.

Written out table by table (never from services/counseling/tables.py): this revision creates the
schema of *this* revision forever. A test compares the migrated schema with tables.py.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

from shared.audit import create_audit_table, drop_audit_table
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
    create_audit_table(bind)
    op.create_table(
        "counselors",
        uuid_column("counselor_id", primary_key=True),
        sa.Column("display_name", sa.Text, nullable=False),
        sa.Column("provider", sa.Text, nullable=False),
        sa.Column("subject", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("onboarded_on", sa.Date, nullable=False),
        sa.Column("deactivated_on", sa.Date, nullable=True),
    )
    op.create_index(
        "counselors_active_subject",
        "counselors",
        ["subject"],
        unique=True,
        postgresql_where=sa.text("active"),
    )
    op.create_table(
        "slots",
        uuid_column("slot_id", primary_key=True),
        uuid_column("counselor_id", nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
    )
    op.create_index("slots_counselor_starts", "slots", ["counselor_id", "starts_at"])
    op.create_table(
        "appointments",
        uuid_column("appointment_id", primary_key=True),
        uuid_column("slot_id", nullable=False),
        uuid_column("counselor_id", nullable=False),
        sa.Column("client_ref", sa.Text, nullable=False),
        sa.Column("client_kind", sa.Text, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("booked_on", sa.Date, nullable=False),
        sa.Column("closed_on", sa.Date, nullable=True),
        sa.Column("cancelled_by", sa.Text, nullable=True),
    )
    op.create_index(
        "appointments_one_per_slot",
        "appointments",
        ["slot_id"],
        unique=True,
        postgresql_where=sa.text("status <> 'cancelled'"),
    )
    op.create_index("appointments_client", "appointments", ["client_ref"])
    op.create_index("appointments_starts", "appointments", ["starts_at"])
    op.create_table(
        "members",
        uuid_column("member_id", primary_key=True),
        uuid_column("union_id", nullable=True),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "clients",
        sa.Column("client_ref", sa.Text, primary_key=True),
        sa.Column("kind", sa.Text, nullable=False),
        uuid_column("member_id", nullable=True),
        sa.Column("full_name_enc", sa.Text, nullable=True),
        sa.Column("phone_enc", sa.Text, nullable=True),
    )
    op.create_table(
        "session_notes",
        uuid_column("appointment_id", primary_key=True),
        sa.Column("notes", sa.Text, nullable=False),
        sa.Column("key_id", sa.Text, nullable=False),
        sa.Column("written_by", sa.Text, nullable=False),
        sa.Column("written_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("session_notes_key", "session_notes", ["key_id"])
    op.create_table(
        "appointment_remarks",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        uuid_column("appointment_id", nullable=False),
        sa.Column("action", sa.Text, nullable=False),
        sa.Column("remark_enc", sa.Text, nullable=False),
        sa.Column("at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_appointment_remarks_appointment_id", "appointment_remarks", ["appointment_id"])


def downgrade() -> None:
    for table in (
        "appointment_remarks",
        "session_notes",
        "clients",
        "members",
        "appointments",
        "slots",
        "counselors",
    ):
        op.drop_table(table)
    bind = op.get_bind()
    drop_audit_table(bind)
    drop_consumer_tables(bind)
    drop_core_tables(bind)
