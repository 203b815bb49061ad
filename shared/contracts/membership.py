"""Events on ``membership.events``. No national ID, phone number or full card number, ever."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field

from shared.contracts.common import Gender, InjurySeverity
from shared.events import DomainEvent, EventRegistry

TOPIC = "membership.events"


class UnionLevel(StrEnum):
    MUNICIPAL = "municipal"
    DISTRICT = "district"
    STREET = "street"
    GRASSROOTS = "grassroots"


class LeaveReason(StrEnum):
    RETIRED = "retired"
    MOVED = "moved"
    DIED = "died"
    OTHER = "other"


class UnionRegistered(DomainEvent):
    """A union joined the federation tree, under ``parent_union_id`` (None for the municipal
    federation).

    v2 renamed v1's ``parent_id`` to ``parent_union_id``: every other union reference of the
    contract is ``*union_id``, and integrators joining the tree (federation statistics) key by it.
    """

    schema_version = 2
    union_id: uuid.UUID
    name: str
    level: UnionLevel
    parent_union_id: uuid.UUID | None = None


class UnionRegisteredV1(DomainEvent):
    """``UnionRegistered`` as written before v2: the parent is ``parent_id``. Such events are
    still stored and can still arrive (replays publish events as written): read ``parent_id`` as
    v2's ``parent_union_id`` (our upcaster below does exactly that)."""

    event_type = "UnionRegistered"
    schema_version = 1
    union_id: uuid.UUID
    name: str
    level: UnionLevel
    parent_id: uuid.UUID | None = None


class MemberJoined(DomainEvent):
    member_id: uuid.UUID
    union_id: uuid.UUID
    full_name: str
    gender: Gender
    birth_date: date
    joined_on: date
    employer: str | None = None


class MemberTransferred(DomainEvent):
    member_id: uuid.UUID
    from_union_id: uuid.UUID
    to_union_id: uuid.UUID
    transferred_on: date


class MemberLeft(DomainEvent):
    member_id: uuid.UUID
    left_on: date
    reason: LeaveReason


class MemberPhoneChanged(DomainEvent):
    """The member's phone number changed (the number itself stays in membership's vault, never on
    Kafka). Changing it to the number already on record is no change and raises no event."""

    member_id: uuid.UUID
    changed_on: date


class CardIssued(DomainEvent):
    member_id: uuid.UUID
    card_last4: str = Field(pattern=r"^[0-9]{4}$")
    issued_on: date


class CardCancelled(DomainEvent):
    member_id: uuid.UUID
    card_last4: str = Field(pattern=r"^[0-9]{4}$")
    cancelled_on: date
    reason: str = "cancelled"


class PlanEnrolled(DomainEvent):
    enrollment_id: uuid.UUID
    member_id: uuid.UUID
    plan_code: str
    shares: int = Field(ge=1)
    price_level: Decimal | None = None
    coverage_starts_on: date
    coverage_ends_on: date  # inclusive: the last day covered
    #: The Beijing date the enrolment was recorded (None: written before this field existed). It
    #: never covers an injury whose report was made before this day.
    recorded_on: date | None = None
    #: A paper enrolment paid before the day it was recorded, entered by a supervisor from its
    #: receipt: coverage may start on ``paid_on`` instead of ``recorded_on``. The receipt's
    #: reference is kept by membership, never published. Still never covers an injury whose
    #: report was made before ``recorded_on``. (False/None: an ordinary enrolment, or an event
    #: written before these fields existed.)
    recorded_late: bool = False
    paid_on: date | None = None


class EnrollmentCancelled(DomainEvent):
    enrollment_id: uuid.UUID
    member_id: uuid.UUID
    plan_code: str
    cancelled_on: date
    reason: str = "cancelled"


class InjuryReported(DomainEvent):
    """``member_version`` is the Member stream's version when the report was made: everything the
    member had (card, enrolments) up to then. A consumer that has not yet seen that version of the
    member must wait for it rather than decide on stale coverage.

    ``plan_versions`` is, likewise, how far each edited catalogue plan's stream was (code ->
    version of its ``PlanDefined`` events; plans never edited are absent): a consumer that has not
    applied those versions of those plans does not yet know the plans the member may be enrolled
    in, and must wait. Empty (events written before it existed): no wait.

    ``first_reported_on`` / ``first_member_version``: the same injury (this member, this
    ``occurred_on``) was reported before, first on that day at that member version. An enrolment
    recorded after the *first* report never covers the injury, however often it is reported
    again (None: the first report of it, or an event written before these fields existed).
    """

    report_id: uuid.UUID
    member_id: uuid.UUID
    occurred_on: date
    work_related: bool
    reported_on: date
    member_version: int = Field(ge=1)
    traffic_accident: bool = False
    severity: InjurySeverity = InjurySeverity.INJURY
    plan_versions: dict[str, int] = Field(default_factory=dict)
    first_reported_on: date | None = None
    first_member_version: int | None = Field(default=None, ge=1)


class PlanDefined(DomainEvent):
    """A plan of the catalogue was created or changed (the catalogue is reference data)."""

    code: str
    name: str
    benefit: str
    claim_kind: str
    price_levels: list[Decimal]
    term_months: int
    min_age: int | None
    max_age: int | None
    genders: list[Gender] | None
    waiting_days: int
    reduced_benefit_until_days: int
    reduced_benefit_amount: Decimal | None
    benefit_per_share: Decimal | None
    max_benefit: Decimal | None
    active: bool
    #: Months after an incident within which it must be reported (older edits: two years).
    reporting_limit_months: int = 24


registry = EventRegistry(
    [
        UnionRegistered,
        MemberJoined,
        MemberTransferred,
        MemberLeft,
        MemberPhoneChanged,
        CardIssued,
        CardCancelled,
        PlanEnrolled,
        EnrollmentCancelled,
        InjuryReported,
        PlanDefined,
    ],
    older=[UnionRegisteredV1],
)


@registry.upcaster("UnionRegistered", 1)
def _union_registered_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data["parent_union_id"] = data.pop("parent_id", None)
    return data
