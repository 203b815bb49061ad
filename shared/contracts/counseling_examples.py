"""Example events of ``counseling.events`` for docs/EVENTS.md and the AsyncAPI document: the
heart station books a member of the seed's union with a partner counsellor. The client is only a
``client_ref``; notes, names and phones are never in an event."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone

from shared.contracts import counseling as k
from shared.events import DomainEvent

#: Beijing time, written as the API accepts it; the envelope shows it in UTC.
_BEIJING = timezone(timedelta(hours=8))


def counseling_examples(make_id: Callable[[str], uuid.UUID]) -> list[tuple[str, str, int, str, DomainEvent]]:
    counselor, slot = make_id("counselor"), make_id("slot")
    booked, missed = make_id("appointment"), make_id("appointment-2")
    client_ref = "3f1c9e0b7a5d42e88c6b1f0a9d2e7c4b5a6f8e9d0c1b2a3f4e5d6c7b8a9f0e1d"
    starts = datetime(2016, 5, 3, 9, 0, tzinfo=_BEIJING)
    ends = datetime(2016, 5, 3, 9, 50, tzinfo=_BEIJING)
    return [
        (
            "Counselor",
            str(counselor),
            1,
            "counseling",
            k.CounselorOnboarded(
                counselor_id=counselor,
                display_name="和谐心理 · 王老师",
                provider=k.Provider.PARTNER,
                subject="counselor-1",
                onboarded_on=date(2016, 4, 20),
            ),
        ),
        (
            "Counselor",
            str(counselor),
            2,
            "counseling",
            k.SlotPublished(slot_id=slot, counselor_id=counselor, starts_at=starts, ends_at=ends),
        ),
        (
            "Counselor",
            str(counselor),
            3,
            "counseling",
            k.CounselorDeactivated(counselor_id=counselor, deactivated_on=date(2017, 4, 30)),
        ),
        (
            "Appointment",
            str(booked),
            1,
            "counseling",
            k.AppointmentBooked(
                appointment_id=booked,
                slot_id=slot,
                counselor_id=counselor,
                client_ref=client_ref,
                client_kind=k.ClientKind.MEMBER,
                starts_at=starts,
                ends_at=ends,
                booked_on=date(2016, 4, 29),
            ),
        ),
        (
            "Appointment",
            str(booked),
            2,
            "counseling",
            k.AppointmentCompleted(
                appointment_id=booked,
                slot_id=slot,
                counselor_id=counselor,
                client_ref=client_ref,
                completed_on=date(2016, 5, 3),
            ),
        ),
        (
            "Appointment",
            str(missed),
            2,
            "counseling",
            k.AppointmentCancelled(
                appointment_id=missed,
                slot_id=make_id("slot-2"),
                client_ref=client_ref,
                cancelled_by=k.CancelledBy.CLIENT,
                cancelled_on=date(2016, 5, 1),
            ),
        ),
        (
            "Appointment",
            str(make_id("appointment-3")),
            2,
            "counseling",
            k.AppointmentNoShow(
                appointment_id=make_id("appointment-3"),
                slot_id=make_id("slot-3"),
                client_ref=client_ref,
                recorded_on=date(2016, 5, 10),
            ),
        ),
    ]
