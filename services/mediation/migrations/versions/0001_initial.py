"""Core event-sourcing tables, the access audit trail, the union tree, the case read models and
the vault (encrypted parties, texts, minutes).

Written out table by table (never from services/mediation/tables.py): this revision must create
the schema of *this* revision forever. A test compares the migrated schema with tables.py.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, UUID

from shared.audit import create_audit_table, drop_audit_table
from shared.migrations import (
    create_consumer_tables,
    create_core_tables,
    drop_consumer_tables,
    drop_core_tables,
)

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def _uuid(name: str, *, primary_key: bool = False, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, UUID(as_uuid=True), primary_key=primary_key, nullable=nullable and not primary_key)


def upgrade() -> None:
    bind = op.get_bind()
    create_core_tables(bind)
    create_consumer_tables(bind)
    create_audit_table(bind)
    op.create_table(
        "unions",
        _uuid("union_id", primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        _uuid("parent_id", nullable=True),
    )
    op.create_table(
        "members",
        _uuid("member_id", primary_key=True),
        _uuid("union_id"),
        sa.Column("active", sa.Boolean, nullable=False),
    )
    op.create_table(
        "stations",
        _uuid("union_id", primary_key=True),
        sa.Column("case_prefix", sa.Text, nullable=False),
    )
    op.create_table(
        "case_counters",
        _uuid("station_union_id", primary_key=True),
        sa.Column("year", sa.Integer, primary_key=True),
        sa.Column("last", sa.Integer, nullable=False),
    )
    op.create_table(
        "cases",
        _uuid("case_id", primary_key=True),
        sa.Column("case_number", sa.Text, nullable=False, unique=True),
        _uuid("station_union_id"),
        sa.Column("party", sa.Text, nullable=False),
        _uuid("member_id", nullable=True),
        sa.Column("category", sa.Text, nullable=False),
        sa.Column("amount_claimed", sa.Numeric(12, 2), nullable=True),
        sa.Column("learned_on", sa.Date, nullable=False),
        sa.Column("received_on", sa.Date, nullable=False),
        sa.Column("mediation_deadline", sa.Date, nullable=False),
        sa.Column("arbitration_limit", sa.Date, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("tier", sa.Text, nullable=False),
        _uuid("handling_union_id"),
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
    )
    op.create_index("ix_cases_handling_union_id", "cases", ["handling_union_id", "status"])
    op.create_index("ix_cases_station_union_id", "cases", ["station_union_id"])
    op.create_index("ix_cases_member_id", "cases", ["member_id"])
    op.create_table(
        "case_history",
        _uuid("event_id", primary_key=True),
        _uuid("case_id"),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("data", JSONB, nullable=False),
    )
    op.create_index("ix_case_history_case", "case_history", ["case_id", "version"])
    op.create_table(
        "sessions",
        _uuid("session_id", primary_key=True),
        _uuid("case_id"),
        _uuid("room_id"),
        sa.Column("starts_at", TS, nullable=False),
        sa.Column("ends_at", TS, nullable=False),
        sa.Column("mediator", sa.Text, nullable=False),
        sa.Column("parties_present", JSONB, nullable=False),
        sa.Column("minutes_recorded", sa.Boolean, nullable=False),
    )
    op.create_index("ix_sessions_case", "sessions", ["case_id"])
    op.create_index("ix_sessions_room", "sessions", ["room_id", "starts_at"])
    op.create_table(
        "case_parties",
        _uuid("case_id", primary_key=True),
        sa.Column("worker_name", sa.Text, nullable=True),
        sa.Column("worker_phone", sa.Text, nullable=True),
        sa.Column("employer_name", sa.Text, nullable=False),
        sa.Column("employer_credit_code", sa.Text, nullable=True),
        sa.Column("claim_text", sa.Text, nullable=False),
    )
    op.create_table(
        "case_texts",
        _uuid("case_id", primary_key=True),
        sa.Column("version", sa.Integer, primary_key=True),
        sa.Column("field", sa.Text, primary_key=True),
        sa.Column("ciphertext", sa.Text, nullable=False),
    )
    op.create_table(
        "minutes",
        _uuid("session_id", primary_key=True),
        _uuid("case_id"),
        sa.Column("ciphertext", sa.Text, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("recorded_at", TS, nullable=False, server_default=sa.func.now()),
    )


def downgrade() -> None:
    for table in (
        "minutes",
        "case_texts",
        "case_parties",
        "sessions",
        "case_history",
        "cases",
        "case_counters",
        "stations",
        "members",
        "unions",
    ):
        op.drop_table(table)
    bind = op.get_bind()
    drop_audit_table(bind)
    drop_consumer_tables(bind)
    drop_core_tables(bind)
