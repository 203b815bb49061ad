"""Events on ``mediation.events``: labour-dispute cases at the union service stations.

No personal identifier beyond ids, ever: the worker who is not a member, the claim in words, the
agreement's terms, reasons typed by staff and session minutes stay in the mediation service
(encrypted); a case names its member only by ``member_id``.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from shared.events import DomainEvent, EventRegistry

TOPIC = "mediation.events"


class Category(StrEnum):
    WAGES = "wages"
    OVERTIME = "overtime"
    CONTRACT = "contract"
    INJURY_COMPENSATION = "injury_compensation"
    DISMISSAL = "dismissal"
    SOCIAL_INSURANCE = "social_insurance"
    OTHER = "other"


class Tier(StrEnum):
    """The three tiers of Beijing's union service system, lowest first."""

    STREET = "street"
    DISTRICT = "district"
    MUNICIPAL = "municipal"


class Party(StrEnum):
    MEMBER = "member"
    WORKER = "worker"  # not a member: known to this service only, by an encrypted name


class CaseReceived(DomainEvent):
    """A station received a mediation application. ``mediation_deadline`` and
    ``arbitration_limit`` are the last days of the periods of art. 14 and art. 27, counted as the
    Civil Code counts (arts. 201-203) on China's holiday calendar."""

    case_id: uuid.UUID
    case_number: str
    station_union_id: uuid.UUID
    party: Party
    member_id: uuid.UUID | None = None
    category: Category
    amount_claimed: Decimal | None = None
    learned_on: date
    received_on: date
    mediation_deadline: date
    arbitration_limit: date


class MediationSessionScheduled(DomainEvent):
    case_id: uuid.UUID
    session_id: uuid.UUID
    room_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    #: The staff member mediating (a token subject, not a name).
    mediator: str
    #: Who attends, by role (``worker``, ``employer``, ``union_representative``...), never by name.
    parties_present: list[str] = Field(default_factory=list)


class RoomBooked(DomainEvent):
    """A station's mediation room was booked for a session (the room is one per station)."""

    room_id: uuid.UUID
    station_union_id: uuid.UUID
    session_id: uuid.UUID
    case_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime


class ReleaseCause(StrEnum):
    """Why a booking of the room was given up."""

    CASE_WITHDRAWN = "case_withdrawn"  # its case was withdrawn (its sessions from that day on)
    SESSION_CANCELLED = "session_cancelled"  # that one session was cancelled (``SessionCancelled``)


class RoomReleased(DomainEvent):
    """A booking of the room was given up, so the time is free again.

    v2 made ``cause`` an enum: v1 could only say ``case_withdrawn`` (a constant), and a single
    cancelled session is a second cause that v1 consumers would refuse."""

    schema_version = 2
    room_id: uuid.UUID
    station_union_id: uuid.UUID
    session_id: uuid.UUID
    case_id: uuid.UUID
    cause: ReleaseCause


class RoomReleasedV1(DomainEvent):
    """``RoomReleased`` as written before v2: released only when its case was withdrawn. Such
    events are still stored and can still arrive (replays publish events as written); the
    upcaster below reads them as v2 with ``cause`` ``case_withdrawn``."""

    event_type = "RoomReleased"
    schema_version = 1
    room_id: uuid.UUID
    station_union_id: uuid.UUID
    session_id: uuid.UUID
    case_id: uuid.UUID
    cause: Literal["case_withdrawn"] = "case_withdrawn"


class SessionCancelled(DomainEvent):
    """One scheduled session was called off before it was held; its room booking is released
    (``RoomReleased`` with cause ``session_cancelled``) so another session may take the time.
    Any reason staff typed stays in the service (encrypted), like every other reason."""

    case_id: uuid.UUID
    session_id: uuid.UUID
    room_id: uuid.UUID
    cancelled_on: date


class MinutesRecorded(DomainEvent):
    """Minutes of a session were written. The minutes themselves never leave the service."""

    case_id: uuid.UUID
    session_id: uuid.UUID
    recorded_by: str


class AgreementReached(DomainEvent):
    case_id: uuid.UUID
    amount: Decimal
    due_on: date
    agreed_on: date
    tier: Tier
    handling_union_id: uuid.UUID


class AgreementFulfilled(DomainEvent):
    case_id: uuid.UUID
    amount_paid: Decimal
    fulfilled_on: date


class EmployerRefused(DomainEvent):
    """The employer refused mediation: the worker may apply for arbitration at once."""

    case_id: uuid.UUID
    refused_on: date


class CaseWithdrawn(DomainEvent):
    case_id: uuid.UUID
    withdrawn_on: date


class CaseReferredToArbitration(DomainEvent):
    case_id: uuid.UUID
    #: The labour dispute arbitration commission the parties were referred to.
    body: str
    referred_on: date
    tier: Tier
    handling_union_id: uuid.UUID


class CaseEscalated(DomainEvent):
    """Not resolved at its tier: handed one tier up the union tree, with its whole history."""

    case_id: uuid.UUID
    from_tier: Tier
    from_union_id: uuid.UUID
    to_tier: Tier
    to_union_id: uuid.UUID
    escalated_on: date
    #: The higher tier received the case: its art. 14 period runs from the escalation.
    mediation_deadline: date


class MediationDeadlinePassed(DomainEvent):
    """The daily sweep found an open case past its mediation deadline (once per deadline)."""

    case_id: uuid.UUID
    mediation_deadline: date
    detected_on: date
    tier: Tier
    handling_union_id: uuid.UUID


class ArbitrationLimitNear(DomainEvent):
    """The sweep flagged an open case whose arbitration limit is near (once per case)."""

    case_id: uuid.UUID
    arbitration_limit: date
    detected_on: date
    days_left: int


registry = EventRegistry(
    [
        CaseReceived,
        MediationSessionScheduled,
        SessionCancelled,
        RoomBooked,
        RoomReleased,
        MinutesRecorded,
        AgreementReached,
        AgreementFulfilled,
        EmployerRefused,
        CaseWithdrawn,
        CaseReferredToArbitration,
        CaseEscalated,
        MediationDeadlinePassed,
        ArbitrationLimitNear,
    ],
    older=[RoomReleasedV1],
)


@registry.upcaster("RoomReleased", 1)
def _room_released_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    data["cause"] = data.get("cause") or ReleaseCause.CASE_WITHDRAWN.value
    return data
