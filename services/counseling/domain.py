"""The heart station's rules: counsellors and their slots, appointments, who may read notes.

Pure: no I/O, no clock (``today`` is a Beijing date passed in), no framework. Session notes are
never handled here: the domain decides *whether* an appointment may be completed and *who* may
read its notes; the text itself goes straight from the request to the cipher.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum

from shared.aggregate import Aggregate, Conflict, DomainError, InvalidInput, NotFound, applies
from shared.contracts.counseling import (
    AppointmentBooked,
    AppointmentCancelled,
    AppointmentCompleted,
    AppointmentNoShow,
    CancelledBy,
    ClientKind,
    CounselorDeactivated,
    CounselorOnboarded,
    Provider,
    SlotPublished,
)

#: Business dates are Beijing dates (UTC+8 all year).
_BEIJING = timezone(timedelta(hours=8))
#: A slot longer than this is a typing mistake, not a session.
MAX_SLOT = timedelta(hours=8)
MIN_SLOT = timedelta(minutes=10)


def beijing_day(moment: datetime) -> date:
    """The Beijing date of ``moment``; past the end of 9999-12-31 in Beijing (an instant the
    request types still accept, late on that day in UTC) it is the last date there is, which
    every rule here treats as "far in the future", instead of an OverflowError (a 500)."""
    try:
        return moment.astimezone(_BEIJING).date()
    except OverflowError:
        return date.max


class SlotTaken(Conflict):
    def __init__(self) -> None:
        super().__init__("this slot is already booked", field="slot_id", code="slot_taken")


class MemberNotKnown(Conflict):
    """The member's ``MemberJoined`` has not reached this service yet: callers retry."""

    def __init__(self) -> None:
        super().__init__("this member is not known here (yet)", field="member_id", code="member_not_known")


class NotAssigned(DomainError):
    """Only the counsellor the appointment is assigned to may do this (answered as 403)."""

    status = 403

    def __init__(self, what: str) -> None:
        super().__init__(f"only the assigned counsellor may {what}", code="not_assigned_counselor")


# --- counsellors and their slots ----------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    slot_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime

    def overlaps(self, starts_at: datetime, ends_at: datetime) -> bool:
        """Half-open intervals: a slot ending at 10:00 and one starting at 10:00 do not overlap."""
        return self.starts_at < ends_at and starts_at < self.ends_at


class Counselor(Aggregate[str]):
    """A counsellor of the partner provider or a volunteer, acting through one token subject.
    Their slots live in their stream, so "no two slots of one counsellor overlap" is decided
    against every slot they have, under the stream's optimistic concurrency."""

    stream_type = "Counselor"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.display_name = ""
        self.provider: Provider | None = None
        self.subject = ""
        self.active = False
        self.slots: dict[uuid.UUID, Slot] = {}

    @classmethod
    def onboard(
        cls, counselor_id: uuid.UUID, *, display_name: str, provider: Provider, subject: str, today: date
    ) -> Counselor:
        counselor = cls(str(counselor_id))
        counselor._raise(
            CounselorOnboarded(
                counselor_id=counselor_id,
                display_name=display_name,
                provider=provider,
                subject=subject,
                onboarded_on=today,
            )
        )
        return counselor

    def deactivate(self, *, today: date) -> None:
        if not self.active:
            raise Conflict("the counsellor is already deactivated", code="counselor_inactive")
        self._raise(CounselorDeactivated(counselor_id=uuid.UUID(self.id), deactivated_on=today))

    def publish_slot(
        self, slot_id: uuid.UUID, starts_at: datetime, ends_at: datetime, *, today: date
    ) -> Slot:
        if not self.active:
            raise Conflict("a deactivated counsellor cannot publish slots", code="counselor_inactive")
        if ends_at <= starts_at:
            raise InvalidInput(
                "a slot must end after it starts", field="ends_at", code="slot_ends_before_start"
            )
        if not MIN_SLOT <= ends_at - starts_at <= MAX_SLOT:
            raise InvalidInput(
                "a slot lasts between 10 minutes and 8 hours", field="ends_at", code="slot_length"
            )
        if beijing_day(starts_at) < today:
            raise InvalidInput("a slot cannot start on a past day", field="starts_at", code="slot_in_past")
        clash = next((s for s in self.slots.values() if s.overlaps(starts_at, ends_at)), None)
        if clash is not None:
            raise Conflict(
                f"the slot overlaps this counsellor's slot {clash.slot_id}",
                field="starts_at",
                code="slot_overlaps",
            )
        self._raise(
            SlotPublished(
                slot_id=slot_id, counselor_id=uuid.UUID(self.id), starts_at=starts_at, ends_at=ends_at
            )
        )
        return self.slots[slot_id]

    @applies(CounselorOnboarded)
    def _onboarded(self, e: CounselorOnboarded) -> None:
        self.display_name, self.provider, self.subject, self.active = (
            e.display_name,
            e.provider,
            e.subject,
            True,
        )

    @applies(CounselorDeactivated)
    def _deactivated(self, e: CounselorDeactivated) -> None:
        self.active = False

    @applies(SlotPublished)
    def _slot(self, e: SlotPublished) -> None:
        self.slots[e.slot_id] = Slot(e.slot_id, e.starts_at, e.ends_at)


# --- clients ------------------------------------------------------------------------------------

_PHONE_SEPARATORS = re.compile(r"[\s\-().]")


def normalize_phone(raw: str) -> str:
    """``+86 138-0013-8000`` -> ``13800138000``: one resident, one identity however typed."""
    digits = _PHONE_SEPARATORS.sub("", raw)
    if digits.startswith("+86"):
        digits = digits[3:]
    elif digits.startswith("0086"):
        digits = digits[4:]
    if not digits.isascii() or not digits.isdigit() or not 7 <= len(digits) <= 15:
        # Never the value itself: it is a phone number.
        raise InvalidInput(
            "must be a phone number of 7 to 15 digits", field="resident.phone", code="invalid_phone"
        )
    return digits


@dataclass(frozen=True)
class Client:
    """Who an appointment is for, as the events know them: a pseudonymous reference."""

    ref: str
    kind: ClientKind


# --- appointments -------------------------------------------------------------------------------


class Status(StrEnum):
    BOOKED = "booked"
    CANCELLED = "cancelled"
    COMPLETED = "completed"
    NO_SHOW = "no_show"


class Appointment(Aggregate[str]):
    stream_type = "Appointment"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.status: Status | None = None
        self.slot_id: uuid.UUID | None = None
        self.counselor_id: uuid.UUID | None = None
        self.client_ref = ""
        self.client_kind: ClientKind | None = None
        self.starts_at: datetime | None = None
        self.ends_at: datetime | None = None

    @classmethod
    def book(
        cls,
        appointment_id: uuid.UUID,
        *,
        counselor: Counselor,
        slot_id: uuid.UUID,
        slot_taken: bool,
        client: Client,
        today: date,
    ) -> Appointment:
        """``slot_taken``: the slot has a live (not cancelled) appointment. The caller's database
        also refuses a second one under concurrency; this is the rule, that is the guard."""
        slot = counselor.slots.get(slot_id)
        if not counselor.exists or slot is None:
            raise NotFound(f"slot {slot_id} not found", field="slot_id", code="slot_not_found")
        if not counselor.active:
            raise Conflict("the counsellor of this slot is no longer active", code="counselor_inactive")
        if beijing_day(slot.starts_at) < today:
            raise Conflict("the slot is in the past", field="slot_id", code="slot_in_past")
        if slot_taken:
            raise SlotTaken()
        appointment = cls(str(appointment_id))
        appointment._raise(
            AppointmentBooked(
                appointment_id=appointment_id,
                slot_id=slot_id,
                counselor_id=uuid.UUID(counselor.id),
                client_ref=client.ref,
                client_kind=client.kind,
                starts_at=slot.starts_at,
                ends_at=slot.ends_at,
                booked_on=today,
            )
        )
        return appointment

    def _open(self, doing: str) -> None:
        if self.status is not Status.BOOKED:
            raise Conflict(f"cannot {doing}: the appointment is {self.status}", code="appointment_closed")

    def _started_by(self, today: date, doing: str) -> None:
        assert self.starts_at is not None
        if beijing_day(self.starts_at) > today:
            raise Conflict(f"cannot {doing} before the session's day", code="session_not_started")

    def cancel(self, *, by: CancelledBy, today: date) -> None:
        """Frees the slot for another booking."""
        self._open("cancel")
        assert self.slot_id is not None
        self._raise(
            AppointmentCancelled(
                appointment_id=uuid.UUID(self.id),
                slot_id=self.slot_id,
                client_ref=self.client_ref,
                cancelled_by=by,
                cancelled_on=today,
            )
        )

    def complete(self, *, actor_subject: str, assigned_subject: str, today: date) -> None:
        """Only the assigned counsellor completes a session (and so writes its notes)."""
        if actor_subject != assigned_subject:
            raise NotAssigned("complete this session and write its notes")
        self._open("complete")
        self._started_by(today, "complete the session")
        assert self.slot_id is not None and self.counselor_id is not None
        self._raise(
            AppointmentCompleted(
                appointment_id=uuid.UUID(self.id),
                slot_id=self.slot_id,
                counselor_id=self.counselor_id,
                client_ref=self.client_ref,
                completed_on=today,
            )
        )

    def no_show(self, *, today: date) -> None:
        self._open("record a no-show")
        self._started_by(today, "record a no-show")
        assert self.slot_id is not None
        self._raise(
            AppointmentNoShow(
                appointment_id=uuid.UUID(self.id),
                slot_id=self.slot_id,
                client_ref=self.client_ref,
                recorded_on=today,
            )
        )

    @applies(AppointmentBooked)
    def _booked(self, e: AppointmentBooked) -> None:
        self.status, self.slot_id, self.counselor_id = Status.BOOKED, e.slot_id, e.counselor_id
        self.client_ref, self.client_kind = e.client_ref, e.client_kind
        self.starts_at, self.ends_at = e.starts_at, e.ends_at

    @applies(AppointmentCancelled)
    def _cancelled(self, e: AppointmentCancelled) -> None:
        self.status = Status.CANCELLED

    @applies(AppointmentCompleted)
    def _completed(self, e: AppointmentCompleted) -> None:
        self.status = Status.COMPLETED

    @applies(AppointmentNoShow)
    def _no_show(self, e: AppointmentNoShow) -> None:
        self.status = Status.NO_SHOW


# --- who may read session notes -------------------------------------------------------------------


def notes_refusal(*, role: str, subject: str, assigned_subject: str | None) -> str | None:
    """Why this caller may not read an appointment's notes, or None if they may.

    The assigned counsellor and the supervisor role read them; nobody else, whatever else their
    role may do. ``assigned_subject`` is None when there is no such appointment."""
    if role == "supervisor":
        return None
    if role != "counselor":
        return f"role {role} may not read session notes"
    if assigned_subject is None or subject != assigned_subject:
        return "not the assigned counsellor"
    return None
