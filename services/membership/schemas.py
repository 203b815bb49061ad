"""Request bodies, which are the commands the handlers take, and the answers' shapes.

Bodies check shapes (types, lengths, enums, dates as YYYY-MM-DD, unknown fields refused); the
business rules live in ``domain``. Routes add the path's ids; handlers take the body whole.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Annotated

from pydantic import BaseModel, Field, StrictBool, StrictInt

from shared.contracts.common import Gender, InjurySeverity
from shared.contracts.membership import LeaveReason, UnionLevel
from shared.contracts.plans import Plan
from shared.requests import NO_NUL, Code, Day, LongText, Money, RequestBody, Secret, Text, chars, items


class UnionIn(RequestBody):
    name: Text
    level: UnionLevel
    parent_id: uuid.UUID | None = None


class MemberIn(RequestBody):
    union_id: uuid.UUID
    full_name: Annotated[str, chars(100), NO_NUL]
    gender: Gender
    birth_date: Day
    national_id: Secret
    phone: Secret | None = None
    joined_on: Day | None = None
    employer: Text | None = None


class ContactIn(RequestBody):
    phone: Secret


class LookupIn(RequestBody):
    national_id: Secret


class TransferIn(RequestBody):
    to_union_id: uuid.UUID
    transferred_on: Day | None = None


class LeaveIn(RequestBody):
    reason: LeaveReason
    left_on: Day | None = None


class CardIn(RequestBody):
    card_number: Secret
    issued_on: Day | None = None


class CardCancelIn(RequestBody):
    cancelled_on: Day | None = None
    reason: Text | None = None


class CardReplaceIn(RequestBody):
    card_number: Secret
    replaced_on: Day | None = None


class PaperEnrollmentIn(RequestBody):
    """The receipt of an enrolment paid on paper on an earlier day (supervisors only)."""

    #: The receipt's number as printed on it; kept by membership, never published.
    receipt_reference: Annotated[str, chars(40), NO_NUL]
    paid_on: Day


class EnrollmentIn(RequestBody):
    plan_code: Code
    # The upper bound only keeps the number in a database integer; plans set no maximum yet.
    shares: Annotated[StrictInt, Field(ge=1, le=10_000)]
    #: Not before the day the enrolment is recorded (Beijing), or, with ``paper``, its ``paid_on``.
    starts_on: Day
    price_level: Money | None = None
    ends_on: Day | None = None
    #: Absent for an ordinary enrolment (the contract of DESIGN.md §4 is unchanged).
    paper: PaperEnrollmentIn | None = None


class EnrollmentCancelIn(RequestBody):
    cancelled_on: Day | None = None
    reason: Text | None = None


class InjuryReportIn(RequestBody):
    occurred_on: Day
    work_related: StrictBool
    description: LongText
    diagnosis: LongText
    hospital: Text | None = None
    traffic_accident: StrictBool = False
    severity: InjurySeverity = InjurySeverity.INJURY


class PlanIn(Plan):
    """A plan as staff send it: the catalogue's shape with every string and list bounded (a
    2 MB name used to become an event Kafka refuses)."""

    name: Text
    price_levels: Annotated[list[Money], items(20)] = Field(default_factory=list)
    genders: Annotated[list[Gender], items(2)] | None = None
    # Strict: a JSON ``true`` is not the number 1 (it was stored as a one-month reporting limit).
    term_months: StrictInt = Field(default=12, ge=1, le=60)
    min_age: StrictInt | None = Field(default=None, ge=0, le=150)
    max_age: StrictInt | None = Field(default=None, ge=0, le=150)
    waiting_days: StrictInt = Field(default=0, ge=0, le=3660)
    reduced_benefit_until_days: StrictInt = Field(default=0, ge=0, le=3660)
    reduced_benefit_amount: Money | None = None
    benefit_per_share: Money | None = None
    max_benefit: Money | None = None
    active: StrictBool = True
    reporting_limit_months: StrictInt = Field(default=24, ge=1, le=120)


class UnionCreated(BaseModel):
    union_id: str


class MemberCreated(BaseModel):
    member_id: str


class CardAnswer(BaseModel):
    card_last4: str
    issued_on: date
    replaced_card_last4: str | None = None


class EnrollmentCreated(BaseModel):
    enrollment_id: str
    plan_code: str
    shares: int
    starts_on: date
    ends_on: date
    recorded_late: bool = False
    paid_on: date | None = None


class ReportAccepted(BaseModel):
    report_id: str
    member_id: str
    member_version: int
