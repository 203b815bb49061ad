"""Events on ``counseling.events`` (the heart station).

Clients are named only by ``client_ref``: a keyed HMAC of the member id or of the resident's
phone number, the same for every appointment of one client and meaningless without the service's
key. No event holds a client's name, phone, a cancellation reason or a word of the session notes.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from enum import StrEnum

from shared.events import DomainEvent, EventRegistry

TOPIC = "counseling.events"


class Provider(StrEnum):
    PARTNER = "partner"  # the contracted psychological service provider
    VOLUNTEER = "volunteer"


class ClientKind(StrEnum):
    MEMBER = "member"
    RESIDENT = "resident"  # a resident or worker of the area who is not a union member


class CancelledBy(StrEnum):
    CLIENT = "client"
    COUNSELOR = "counselor"


class CounselorOnboarded(DomainEvent):
    counselor_id: uuid.UUID
    display_name: str
    provider: Provider
    #: The API token subject that acts as this counsellor.
    subject: str
    onboarded_on: date


class CounselorDeactivated(DomainEvent):
    counselor_id: uuid.UUID
    deactivated_on: date


class SlotPublished(DomainEvent):
    slot_id: uuid.UUID
    counselor_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime


class AppointmentBooked(DomainEvent):
    appointment_id: uuid.UUID
    slot_id: uuid.UUID
    counselor_id: uuid.UUID
    client_ref: str
    client_kind: ClientKind
    starts_at: datetime
    ends_at: datetime
    booked_on: date


class AppointmentCancelled(DomainEvent):
    appointment_id: uuid.UUID
    slot_id: uuid.UUID
    client_ref: str
    cancelled_by: CancelledBy
    cancelled_on: date


class AppointmentCompleted(DomainEvent):
    """The session took place; its notes are kept encrypted in the service, never here."""

    appointment_id: uuid.UUID
    slot_id: uuid.UUID
    counselor_id: uuid.UUID
    client_ref: str
    completed_on: date


class AppointmentNoShow(DomainEvent):
    appointment_id: uuid.UUID
    slot_id: uuid.UUID
    client_ref: str
    recorded_on: date


registry = EventRegistry(
    [
        CounselorOnboarded,
        CounselorDeactivated,
        SlotPublished,
        AppointmentBooked,
        AppointmentCancelled,
        AppointmentCompleted,
        AppointmentNoShow,
    ]
)
