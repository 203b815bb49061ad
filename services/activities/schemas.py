"""Request bodies (the commands handlers take) and answer models of the activities API."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import AfterValidator, BaseModel, Field, StrictInt

from shared.contracts.activities import ActivityKind, Audience, PartnerKind, RegistrationStatus
from shared.requests import NO_NUL, Code, Day, Instant, LongText, RequestBody, Secret, Text, chars, items

Capacity = Annotated[StrictInt, Field(ge=1, le=100_000)]
ChildAge = Annotated[StrictInt, Field(ge=0, le=17)]

_PHONE = re.compile(r"^\+?[0-9][0-9 -]{4,22}[0-9]$")


def _phone(value: str) -> str:
    value = value.strip()
    if not _PHONE.fullmatch(value):
        raise ValueError("must be a phone number: digits, optionally a leading + and spaces or dashes")
    return value


Phone = Annotated[Secret, AfterValidator(_phone)]


class PartnerIn(RequestBody):
    name: Text
    kind: PartnerKind = PartnerKind.OTHER


class SessionIn(RequestBody):
    """A session or zone of a carnival-style day, with its own places."""

    title: Text
    capacity: Capacity
    starts_at: Instant | None = None
    ends_at: Instant | None = None


class ScheduleActivity(RequestBody):
    kind: ActivityKind
    title: Text
    starts_at: Instant
    ends_at: Instant
    venue: Text
    capacity: Capacity
    audience: Audience
    child_age_min: ChildAge | None = None
    child_age_max: ChildAge | None = None
    registration_opens_at: Instant | None = None
    registration_closes_at: Instant | None = None
    union_id: uuid.UUID | None = None
    partner: PartnerIn | None = None
    sessions: Annotated[list[SessionIn], items(50)] = Field(default_factory=list)


class ChangeActivity(RequestBody):
    """Only what is sent changes."""

    title: Text | None = None
    starts_at: Instant | None = None
    ends_at: Instant | None = None
    venue: Text | None = None
    capacity: Capacity | None = None
    registration_closes_at: Instant | None = None


class CancelActivity(RequestBody):
    reason: Text = "cancelled"


class ResidentIn(RequestBody):
    """A resident who need not be a member. Kept encrypted; never on Kafka or in logs."""

    full_name: Annotated[str, chars(100), NO_NUL]
    phone: Phone


class ChildIn(RequestBody):
    birth_date: Day


class Register(RequestBody):
    """``member_id``, or ``resident`` where the audience is ``residents``."""

    member_id: uuid.UUID | None = None
    resident: ResidentIn | None = None
    children: Annotated[list[ChildIn], items(10)] = Field(default_factory=list)
    session_id: uuid.UUID | None = None


class Feedback(RequestBody):
    rating: Annotated[StrictInt, Field(ge=1, le=5)]
    comment: LongText | None = None


class AssignVolunteer(RequestBody):
    member_id: uuid.UUID
    role: Code = "volunteer"


class RegisterInterest(RequestBody):
    member_id: uuid.UUID
    kind: ActivityKind


# --- answers ----------------------------------------------------------------------------------


class ActivityCreated(BaseModel):
    activity_id: str
    notified_interest_ids: list[str] = Field(default_factory=list)


class SessionOut(BaseModel):
    session_id: str
    title: str
    capacity: int
    starts_at: datetime | None
    ends_at: datetime | None
    confirmed_count: int
    waitlist_count: int


class ActivityOut(BaseModel):
    activity_id: str
    kind: ActivityKind
    title: str
    starts_at: datetime
    ends_at: datetime
    venue: str
    capacity: int
    confirmed_count: int
    waitlist_count: int
    status: str
    audience: Audience
    child_age_min: int | None
    child_age_max: int | None
    registration_opens_at: datetime | None
    registration_closes_at: datetime | None
    registration_window_closed: bool
    union_id: str | None
    partner: dict[str, str] | None
    sessions: list[SessionOut]
    volunteers: list[dict[str, str]]


class ActivityList(BaseModel):
    items: list[ActivityOut]


class RegistrationAnswer(BaseModel):
    registration_id: str
    status: RegistrationStatus
    waitlist_position: int | None
    activity_id: str
    session_id: str | None


class CancelAnswer(BaseModel):
    status: RegistrationStatus
    promoted_registration_id: str | None


class RegistrationOut(BaseModel):
    registration_id: str
    member_id: str | None
    status: RegistrationStatus
    waitlist_position: int | None
    resident_ref: str | None
    session_id: str | None
    children_ages: list[int]
    registered_at: datetime
    checked_in_at: datetime | None


class RegistrationList(BaseModel):
    items: list[RegistrationOut]


class FeedbackSummary(BaseModel):
    count: int
    average_rating: float | None
    ratings: dict[str, int]
    comments: list[str]


class ResidentContact(BaseModel):
    registration_id: str
    resident_ref: str
    full_name: str
    phone: str  # masked


class InterestCreated(BaseModel):
    interest_id: str


class Participation(BaseModel):
    """One row of the statistics: an activity, a union or a year."""

    key: str
    activities: int
    registrations: int
    confirmed: int
    attended: int
    waitlisted_now: int
    turned_away: int
    cancelled: int


class Statistics(BaseModel):
    by: str
    year: int | None
    items: list[Participation]


class MemberRegistration(BaseModel):
    registration_id: str
    activity_id: str
    title: str
    starts_at: datetime
    status: RegistrationStatus
    checked_in_at: datetime | None


class MemberRegistrations(BaseModel):
    items: list[MemberRegistration]
