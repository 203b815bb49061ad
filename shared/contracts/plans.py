"""The plan catalogue's shape and its default rows (docs/DESIGN.md §2): prices, levels, waiting
periods and limits as the federation publishes them.

The defaults only seed each service's ``plans`` table on first migration; from then on the table
is the truth, edited through the membership staff API and propagated as ``PlanDefined`` events.
"""

from __future__ import annotations

from decimal import Decimal
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.contracts.common import Benefit, Gender


class ClaimKind(StrEnum):
    INJURY = "injury"  # opened automatically from an injury report
    ILLNESS = "illness"  # filed by staff
    HOSPITALIZATION = "hospitalization"
    CHILD = "child"


class Plan(BaseModel):
    model_config = ConfigDict(frozen=True)

    code: str = Field(pattern=r"^[a-z][a-z0-9_]{2,63}$")
    name: str = Field(min_length=1)
    benefit: Benefit
    claim_kind: ClaimKind
    price_levels: list[Decimal] = Field(default_factory=list)  # CNY per share / per level
    term_months: int = Field(default=12, ge=1, le=60)
    min_age: int | None = Field(default=None, ge=0)
    max_age: int | None = Field(default=None, ge=0)
    genders: list[Gender] | None = None  # None: everybody
    waiting_days: int = Field(default=0, ge=0)  # nothing is paid for incidents up to this day
    reduced_benefit_until_days: int = Field(default=0, ge=0)  # then a reduced sum up to this day
    reduced_benefit_amount: Decimal | None = None
    benefit_per_share: Decimal | None = None  # the most one share can pay on one claim
    max_benefit: Decimal | None = None  # the most one claim can pay, whatever the shares
    active: bool = True  # open for new enrolments; cover already bought is kept either way
    #: An incident reported more than this many months after it happened is decided "no
    #: coverage" for this plan (``reporting_limit_passed``). Counted on dates: 24 months is two
    #: years, the same day two years later still in time (29 Feb -> 28 Feb).
    reporting_limit_months: int = Field(default=24, ge=1, le=120)


D = Decimal

DEFAULT_PLANS: list[Plan] = [
    Plan(
        code="accident_injury",
        name="在职职工意外伤害互助保障",
        benefit=Benefit.PAID,
        claim_kind=ClaimKind.INJURY,
        price_levels=[D(26), D(50), D(74), D(100)],
        min_age=16,
        max_age=60,
        benefit_per_share=D(60000),
    ),
    Plan(
        code="female_special_disease",
        name="在职女职工特殊疾病互助保障",
        benefit=Benefit.PAID,
        claim_kind=ClaimKind.ILLNESS,
        price_levels=[D(25)],
        genders=[Gender.FEMALE],
        waiting_days=30,
        reduced_benefit_until_days=60,
        reduced_benefit_amount=D(500),
        benefit_per_share=D(15000),
    ),
    Plan(
        code="critical_illness",
        name="在职职工重大疾病互助保障",
        benefit=Benefit.PAID,
        claim_kind=ClaimKind.ILLNESS,
        price_levels=[D(40)],
    ),
    Plan(
        code="hospitalization_allowance",
        name="在职职工住院津贴互助保障",
        benefit=Benefit.PAID,
        claim_kind=ClaimKind.HOSPITALIZATION,
        price_levels=[D(60)],
        max_benefit=D(7200),
    ),
    Plan(
        code="hospital_medical",
        name="在职职工住院医疗互助保障",
        benefit=Benefit.PAID,
        claim_kind=ClaimKind.HOSPITALIZATION,
    ),
    Plan(
        code="child_accident",
        name="在职职工子女意外伤害互助保障",
        benefit=Benefit.PAID,
        claim_kind=ClaimKind.CHILD,
    ),
    Plan(
        code="card_non_work_accident",
        name="京卡非工伤意外伤害综合互助保障",
        benefit=Benefit.CARD,
        claim_kind=ClaimKind.INJURY,
        max_benefit=D(20000),
    ),
]
