"""Core event-sourcing tables, coverage and claims read models, the seeded plan catalogue.

Written out table by table (not ``metadata.create_all``): this revision must create the schema of
*this* revision forever, whatever services/claims/tables.py says later. A test compares the
migrated schema with tables.py, so the two cannot drift apart unnoticed.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from services.claims.projections import default_plan_rows
from shared.migrations import create_core_tables, drop_core_tables, uuid_column

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_core_tables(op.get_bind())
    plans = op.create_table(
        "plans",
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("body", JSONB, nullable=False),
    )
    op.create_table(
        "coverage_members",
        uuid_column("member_id", primary_key=True),
        sa.Column("joined_on", sa.Date, nullable=True),
        sa.Column("left_on", sa.Date, nullable=True),
        sa.Column("seen_version", sa.Integer, nullable=False, server_default="0"),
    )
    op.create_table(
        "coverage_cards",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        uuid_column("member_id", nullable=False),
        sa.Column("card_last4", sa.Text, nullable=False),
        sa.Column("issued_on", sa.Date, nullable=False),
        sa.Column("cancelled_on", sa.Date, nullable=True),
    )
    op.create_index("ix_coverage_cards_member_id", "coverage_cards", ["member_id"])
    op.create_table(
        "coverage_enrollments",
        uuid_column("enrollment_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        sa.Column("plan_code", sa.Text, nullable=False),
        sa.Column("shares", sa.Integer, nullable=False),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("ends_on", sa.Date, nullable=False),
        sa.Column("cancelled_on", sa.Date, nullable=True),
    )
    op.create_index("ix_coverage_enrollments_member_id", "coverage_enrollments", ["member_id"])
    op.create_table(
        "pending_reports",
        uuid_column("report_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        sa.Column("needed_version", sa.Integer, nullable=False),
        sa.Column("injury", JSONB, nullable=False),
        uuid_column("correlation_id", nullable=False),
        uuid_column("causation_id", nullable=False),
        sa.Column("received_at", TS, server_default=sa.func.now()),
    )
    op.create_index("ix_pending_reports_member_id", "pending_reports", ["member_id"])
    op.create_table(
        "claims",
        uuid_column("claim_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        uuid_column("report_id", nullable=True),
        sa.Column("plan_code", sa.Text, nullable=False),
        sa.Column("benefit", sa.Text, nullable=False),
        uuid_column("enrollment_id", nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("required_documents", JSONB, nullable=False),
        sa.Column("received_documents", JSONB, nullable=False, server_default="[]"),
        sa.Column("missing_documents", JSONB, nullable=False),
        sa.Column("approved_amount", sa.Numeric(12, 2), nullable=True),
        sa.Column("paid_amount", sa.Numeric(12, 2), nullable=True),
        sa.Column("rejection_reason", sa.Text, nullable=True),
        sa.Column("incident_on", sa.Date, nullable=False),
        sa.Column("filed_on", sa.Date, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    for column in ("member_id", "report_id", "status"):
        op.create_index(f"ix_claims_{column}", "claims", [column])
    op.create_table(
        "report_decisions",
        uuid_column("report_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        sa.Column("reasons", JSONB, nullable=False),
        sa.Column("decided_at", TS, nullable=False),
    )
    op.bulk_insert(plans, default_plan_rows())


def downgrade() -> None:
    for table in (
        "report_decisions",
        "claims",
        "pending_reports",
        "coverage_enrollments",
        "coverage_cards",
        "coverage_members",
        "plans",
    ):
        op.drop_table(table)
    drop_core_tables(op.get_bind())
