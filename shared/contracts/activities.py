"""Events on ``activities.events``.

Residents (who need not be members) appear only under ``resident_ref``, a pseudonymous reference
(a keyed hash of their phone number, so one person's registrations can be told apart and counted
without naming them); their name and phone never leave the activities service. Children appear
only as their age on the activity date.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field

from shared.events import DomainEvent, EventRegistry

TOPIC = "activities.events"


class ActivityKind(StrEnum):
    PARENT_CHILD = "parent_child"
    VOLUNTEER_WORKSHOP = "volunteer_workshop"
    LECTURE = "lecture"
    CARNIVAL = "carnival"
    OTHER = "other"


class Audience(StrEnum):
    MEMBERS = "members"
    #: Members with their children, whose ages on the activity date must be in a range.
    MEMBER_FAMILIES = "member_families"
    #: Anyone living in the area, members or not.
    RESIDENTS = "residents"


class PartnerKind(StrEnum):
    VOLUNTEER_TEAM = "volunteer_team"
    PROVIDER = "provider"
    OTHER = "other"


class RegistrationStatus(StrEnum):
    CONFIRMED = "confirmed"
    WAITLISTED = "waitlisted"
    CANCELLED = "cancelled"


class CancellationReason(StrEnum):
    #: Asked for by the registrant (or staff on their behalf).
    REQUESTED = "requested"
    #: The member left their union: their future registrations end.
    MEMBER_LEFT = "member_left"
    #: The whole activity was cancelled.
    ACTIVITY_CANCELLED = "activity_cancelled"


class Partner(BaseModel):
    """Who runs the activity with the union: a volunteer team, a service provider."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    name: str
    kind: PartnerKind = PartnerKind.OTHER


class Session(BaseModel):
    """A session or zone of a carnival-style day, with its own places and waitlist."""

    model_config = ConfigDict(frozen=True, extra="ignore")
    session_id: uuid.UUID
    title: str
    capacity: int = Field(ge=1)
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class ActivityScheduled(DomainEvent):
    """An activity was scheduled. ``capacity`` counts confirmed registrations (one per member,
    family or resident); with ``sessions`` it is the sum of theirs and each session fills on its
    own. Registration is open from ``registration_opens_at`` (None: at once) until
    ``registration_closes_at`` (None: until the activity starts)."""

    activity_id: uuid.UUID
    kind: ActivityKind
    title: str
    starts_at: datetime
    ends_at: datetime
    venue: str
    capacity: int = Field(ge=1)
    audience: Audience
    child_age_min: int | None = None
    child_age_max: int | None = None
    registration_opens_at: datetime | None = None
    registration_closes_at: datetime | None = None
    union_id: uuid.UUID | None = None
    partner: Partner | None = None
    sessions: list[Session] = Field(default_factory=list)


class ActivityChanged(DomainEvent):
    """New values of what may change once scheduled (all of them, changed or not); ``changed``
    names the fields that did. A larger capacity promotes from the waitlist (``WaitlistPromoted``
    events follow in the same transaction)."""

    activity_id: uuid.UUID
    title: str
    starts_at: datetime
    ends_at: datetime
    venue: str
    capacity: int = Field(ge=1)
    registration_closes_at: datetime | None = None
    changed: list[str]


class ActivityCancelled(DomainEvent):
    """The activity will not take place. Every live registration is cancelled by a
    ``RegistrationCancelled`` (reason ``activity_cancelled``) in the same transaction, so each
    registrant can be told."""

    activity_id: uuid.UUID
    reason: str
    cancelled_on: date
    registration_ids: list[uuid.UUID] = Field(default_factory=list)


class RegistrationWindowClosed(DomainEvent):
    """Staff closed registration before ``registration_closes_at``."""

    activity_id: uuid.UUID
    closed_at: datetime


class RegistrationConfirmed(DomainEvent):
    """A place was taken. Either ``member_id`` or ``resident_ref`` is set; ``member_union_id`` is
    the member's union when they registered (None for residents)."""

    activity_id: uuid.UUID
    registration_id: uuid.UUID
    member_id: uuid.UUID | None = None
    resident_ref: str | None = None
    member_union_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    children_ages: list[int] = Field(default_factory=list)
    registered_at: datetime


class RegistrationWaitlisted(DomainEvent):
    """No place was left: the registration waits, FIFO, at ``position`` (1 = next in line) of the
    activity's (or its session's) waitlist."""

    activity_id: uuid.UUID
    registration_id: uuid.UUID
    member_id: uuid.UUID | None = None
    resident_ref: str | None = None
    member_union_id: uuid.UUID | None = None
    session_id: uuid.UUID | None = None
    children_ages: list[int] = Field(default_factory=list)
    position: int = Field(ge=1)
    registered_at: datetime


class RegistrationCancelled(DomainEvent):
    activity_id: uuid.UUID
    registration_id: uuid.UUID
    member_id: uuid.UUID | None = None
    resident_ref: str | None = None
    session_id: uuid.UUID | None = None
    #: What the registration was when cancelled: ``confirmed`` frees a place.
    previous_status: RegistrationStatus
    reason: CancellationReason
    cancelled_at: datetime


class WaitlistPromoted(DomainEvent):
    """The first in line got the place ``freed_by`` gave up (None: the capacity grew)."""

    activity_id: uuid.UUID
    registration_id: uuid.UUID
    member_id: uuid.UUID | None = None
    resident_ref: str | None = None
    session_id: uuid.UUID | None = None
    freed_by: uuid.UUID | None = None
    promoted_at: datetime


class AttendanceRecorded(DomainEvent):
    activity_id: uuid.UUID
    registration_id: uuid.UUID
    member_id: uuid.UUID | None = None
    resident_ref: str | None = None
    session_id: uuid.UUID | None = None
    checked_in_at: datetime


class FeedbackSubmitted(DomainEvent):
    activity_id: uuid.UUID
    registration_id: uuid.UUID
    member_id: uuid.UUID | None = None
    rating: int = Field(ge=1, le=5)
    comment: str | None = None
    submitted_at: datetime


class VolunteerAssigned(DomainEvent):
    """A member volunteers at the activity (``role``: volunteer, host, speaker...)."""

    activity_id: uuid.UUID
    member_id: uuid.UUID
    role: str
    assigned_on: date


class VolunteerReleased(DomainEvent):
    activity_id: uuid.UUID
    member_id: uuid.UUID
    released_on: date


class InterestRegistered(DomainEvent):
    """A member who missed out asks to hear about the next activity of ``kind``."""

    interest_id: uuid.UUID
    member_id: uuid.UUID
    kind: ActivityKind
    registered_on: date


class InterestedMembersNotified(DomainEvent):
    """An activity of ``kind`` was scheduled: these open interests are to be told (a notification
    sender subscribes to this); each interest is notified once."""

    activity_id: uuid.UUID
    kind: ActivityKind
    interest_ids: list[uuid.UUID]
    member_ids: list[uuid.UUID]


registry = EventRegistry(
    [
        ActivityScheduled,
        ActivityChanged,
        ActivityCancelled,
        RegistrationWindowClosed,
        RegistrationConfirmed,
        RegistrationWaitlisted,
        RegistrationCancelled,
        WaitlistPromoted,
        AttendanceRecorded,
        FeedbackSubmitted,
        VolunteerAssigned,
        VolunteerReleased,
        InterestRegistered,
        InterestedMembersNotified,
    ]
)
