"""Core event-sourcing tables, coverage and claims read models, the seeded plan catalogue.

Written out table by table (not ``metadata.create_all``): this revision must create the schema of
*this* revision forever, whatever services/claims/tables.py says later. A test compares the
migrated schema with tables.py, so the two cannot drift apart unnoticed.

Revision ID: 0001
Revises:
"""

from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

from shared.migrations import create_core_tables, drop_core_tables, uuid_column

#: The catalogue as this migration seeded it, frozen as a literal (a copy of
#: shared/contracts/plans.py DEFAULT_PLANS when it was written): later edits to the live
#: defaults must not change what an old migration does.
SEEDED_PLANS: list[dict[str, Any]] = [
    {
        "code": "accident_injury",
        "name": "在职职工意外伤害互助保障",
        "benefit": "paid",
        "claim_kind": "injury",
        "price_levels": ["26", "50", "74", "100"],
        "term_months": 12,
        "min_age": 16,
        "max_age": 60,
        "genders": None,
        "waiting_days": 0,
        "reduced_benefit_until_days": 0,
        "reduced_benefit_amount": None,
        "benefit_per_share": "60000",
        "max_benefit": None,
        "active": True,
    },
    {
        "code": "female_special_disease",
        "name": "在职女职工特殊疾病互助保障",
        "benefit": "paid",
        "claim_kind": "illness",
        "price_levels": ["25"],
        "term_months": 12,
        "min_age": None,
        "max_age": None,
        "genders": ["female"],
        "waiting_days": 30,
        "reduced_benefit_until_days": 60,
        "reduced_benefit_amount": "500",
        "benefit_per_share": "15000",
        "max_benefit": None,
        "active": True,
    },
    {
        "code": "critical_illness",
        "name": "在职职工重大疾病互助保障",
        "benefit": "paid",
        "claim_kind": "illness",
        "price_levels": ["40"],
        "term_months": 12,
        "min_age": None,
        "max_age": None,
        "genders": None,
        "waiting_days": 0,
        "reduced_benefit_until_days": 0,
        "reduced_benefit_amount": None,
        "benefit_per_share": None,
        "max_benefit": None,
        "active": True,
    },
    {
        "code": "hospitalization_allowance",
        "name": "在职职工住院津贴互助保障",
        "benefit": "paid",
        "claim_kind": "hospitalization",
        "price_levels": ["60"],
        "term_months": 12,
        "min_age": None,
        "max_age": None,
        "genders": None,
        "waiting_days": 0,
        "reduced_benefit_until_days": 0,
        "reduced_benefit_amount": None,
        "benefit_per_share": None,
        "max_benefit": "7200",
        "active": True,
    },
    {
        "code": "hospital_medical",
        "name": "在职职工住院医疗互助保障",
        "benefit": "paid",
        "claim_kind": "hospitalization",
        "price_levels": [],
        "term_months": 12,
        "min_age": None,
        "max_age": None,
        "genders": None,
        "waiting_days": 0,
        "reduced_benefit_until_days": 0,
        "reduced_benefit_amount": None,
        "benefit_per_share": None,
        "max_benefit": None,
        "active": True,
    },
    {
        "code": "child_accident",
        "name": "在职职工子女意外伤害互助保障",
        "benefit": "paid",
        "claim_kind": "child",
        "price_levels": [],
        "term_months": 12,
        "min_age": None,
        "max_age": None,
        "genders": None,
        "waiting_days": 0,
        "reduced_benefit_until_days": 0,
        "reduced_benefit_amount": None,
        "benefit_per_share": None,
        "max_benefit": None,
        "active": True,
    },
    {
        "code": "card_non_work_accident",
        "name": "京卡非工伤意外伤害综合互助保障",
        "benefit": "card",
        "claim_kind": "injury",
        "price_levels": [],
        "term_months": 12,
        "min_age": None,
        "max_age": None,
        "genders": None,
        "waiting_days": 0,
        "reduced_benefit_until_days": 0,
        "reduced_benefit_amount": None,
        "benefit_per_share": None,
        "max_benefit": "20000",
        "active": True,
    },
]

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
    op.bulk_insert(plans, [{"code": p["code"], "body": p} for p in SEEDED_PLANS])


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
