"""Initial schema: the event-sourcing core, read models, the vault and the seeded plan catalogue.

Written out table by table (not ``metadata.create_all``) so that later edits of ``tables.py``
never change what this revision did; a test compares the migrated schema with ``tables.py``.

Revision ID: 0001
Revises:
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
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

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    create_core_tables(op.get_bind())

    # --- read models of our own events ---
    op.create_table(
        "unions",
        uuid_column("union_id", primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("level", sa.Text, nullable=False),
        uuid_column("parent_id", nullable=True),
        sa.Column("registered_at", TS, nullable=False),
    )
    op.create_index("ix_unions_parent_id", "unions", ["parent_id"])
    op.create_table(
        "members",
        uuid_column("member_id", primary_key=True),
        uuid_column("union_id", nullable=False),
        sa.Column("full_name", sa.Text, nullable=False),
        sa.Column("gender", sa.Text, nullable=False),
        sa.Column("birth_date", sa.Date, nullable=False),
        sa.Column("joined_on", sa.Date, nullable=False),
        sa.Column("employer", sa.Text, nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("left_on", sa.Date, nullable=True),
        sa.Column("leave_reason", sa.Text, nullable=True),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_members_union_id", "members", ["union_id"])
    op.create_table(
        "cards",
        uuid_column("member_id", primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True),
        sa.Column("card_last4", sa.Text, nullable=False),
        sa.Column("issued_on", sa.Date, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("cancelled_on", sa.Date, nullable=True),
        sa.Column("cancel_reason", sa.Text, nullable=True),
    )
    op.create_table(
        "enrollments",
        uuid_column("enrollment_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        uuid_column("union_id", nullable=False),
        sa.Column("plan_code", sa.Text, nullable=False),
        sa.Column("shares", sa.Integer, nullable=False),
        sa.Column("price_level", sa.Numeric(12, 2), nullable=True),
        sa.Column("starts_on", sa.Date, nullable=False),
        sa.Column("ends_on", sa.Date, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("cancelled_on", sa.Date, nullable=True),
        sa.Column("cancel_reason", sa.Text, nullable=True),
        sa.Column("enrolled_at", TS, nullable=False),
    )
    op.create_index("ix_enrollments_member_id", "enrollments", ["member_id"])
    op.create_index("ix_enrollments_starts_on_plan", "enrollments", ["starts_on", "plan_code"])
    op.create_table(
        "injury_reports",
        uuid_column("report_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        sa.Column("occurred_on", sa.Date, nullable=False),
        sa.Column("work_related", sa.Boolean, nullable=False),
        sa.Column("traffic_accident", sa.Boolean, nullable=False),
        sa.Column("severity", sa.Text, nullable=False),
        sa.Column("reported_on", sa.Date, nullable=False),
        sa.Column("member_version", sa.Integer, nullable=False),
        sa.Column("reported_at", TS, nullable=False),
    )
    op.create_index("ix_injury_reports_member_id", "injury_reports", ["member_id"])
    op.create_table(
        "member_timeline",
        uuid_column("event_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("aggregate_type", sa.Text, nullable=False),
        sa.Column("aggregate_id", sa.Text, nullable=False),
        sa.Column("aggregate_version", sa.Integer, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("data", JSONB, nullable=False),
    )
    op.create_index("ix_member_timeline_member", "member_timeline", ["member_id", "occurred_at"])

    # --- the plan catalogue, seeded with the defaults of shared/contracts/plans.py ---
    plans = op.create_table(
        "plans",
        sa.Column("code", sa.Text, primary_key=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("benefit", sa.Text, nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("definition", JSONB, nullable=False),
        sa.Column("position", sa.Integer, nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
    )
    assert plans is not None
    op.bulk_insert(
        plans,
        [
            {
                "code": p["code"],
                "name": p["name"],
                "benefit": p["benefit"],
                "active": p["active"],
                "definition": p,
                "position": i,
            }
            for i, p in enumerate(SEEDED_PLANS, start=1)
        ],
    )

    # --- read models of claims.events ---
    op.create_table(
        "member_claims",
        uuid_column("claim_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        uuid_column("report_id", nullable=True),
        sa.Column("plan_code", sa.Text, nullable=False),
        sa.Column("benefit", sa.Text, nullable=False),
        uuid_column("enrollment_id", nullable=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("amount", sa.Numeric(14, 2), nullable=True),
        sa.Column("required_documents", JSONB, nullable=False),
        sa.Column("missing_documents", JSONB, nullable=True),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_member_claims_member_id", "member_claims", ["member_id"])
    op.create_index("ix_member_claims_report_id", "member_claims", ["report_id"])
    op.create_table(
        "claim_events",
        uuid_column("event_id", primary_key=True),
        uuid_column("member_id", nullable=True),
        uuid_column("claim_id", nullable=True),
        uuid_column("report_id", nullable=True),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("aggregate_version", sa.Integer, nullable=False),
        sa.Column("event_type", sa.Text, nullable=False),
        sa.Column("data", JSONB, nullable=False),
    )
    op.create_index("ix_claim_events_report_id", "claim_events", ["report_id"])
    op.create_index("ix_claim_events_member", "claim_events", ["member_id", "occurred_at"])

    # --- the vault: personal and health data, encrypted ---
    op.create_table(
        "member_identities",
        uuid_column("member_id", primary_key=True),
        sa.Column("national_id_index", sa.Text, nullable=False, unique=True),
        sa.Column("national_id_enc", sa.Text, nullable=False),
        sa.Column("phone_enc", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_table(
        "card_numbers",
        sa.Column("card_number_index", sa.Text, primary_key=True),
        uuid_column("member_id", nullable=False),
        sa.Column("card_number_enc", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_card_numbers_member_id", "card_numbers", ["member_id"])
    op.create_table(
        "injury_details",
        uuid_column("report_id", primary_key=True),
        uuid_column("member_id", nullable=False),
        sa.Column("description_enc", sa.Text, nullable=False),
        sa.Column("diagnosis_enc", sa.Text, nullable=False),
        sa.Column("hospital_enc", sa.Text, nullable=True),
        sa.Column("created_at", TS, nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_injury_details_member_id", "injury_details", ["member_id"])


def downgrade() -> None:
    for table in (
        "injury_details",
        "card_numbers",
        "member_identities",
        "claim_events",
        "member_claims",
        "plans",
        "member_timeline",
        "injury_reports",
        "enrollments",
        "cards",
        "members",
        "unions",
    ):
        op.drop_table(table)
    drop_core_tables(op.get_bind())
