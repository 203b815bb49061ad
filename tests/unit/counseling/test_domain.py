"""Every rule of services/counseling/domain.py, pure (no database, no broker, no clock)."""

from __future__ import annotations

import ast
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from services.counseling import domain, projections
from services.counseling.domain import Appointment, Client, Counselor, Status
from shared.aggregate import Conflict, InvalidInput, NotFound
from shared.clock import BEIJING
from shared.contracts import counseling as c
from shared.contracts import membership as m

TODAY = date(2026, 5, 10)


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=BEIJING)


def saved(agg: Counselor | Appointment) -> None:
    agg.mark_saved()


def counselor(subject: str = "counselor-1") -> Counselor:
    co = Counselor.onboard(
        uuid.uuid4(), display_name="Li Wei", provider=c.Provider.PARTNER, subject=subject, today=TODAY
    )
    saved(co)
    return co


def with_slot(day: date = TODAY) -> tuple[Counselor, domain.Slot]:
    co = counselor()
    slot = co.publish_slot(uuid.uuid4(), at(day, 9), at(day, 10), today=TODAY)
    saved(co)
    return co, slot


MEMBER = Client("a" * 64, c.ClientKind.MEMBER)


def booked(day: date = TODAY) -> tuple[Counselor, Appointment]:
    co, slot = with_slot(day)
    appt = Appointment.book(
        uuid.uuid4(), counselor=co, slot_id=slot.slot_id, slot_taken=False, client=MEMBER, today=TODAY
    )
    saved(appt)
    return co, appt


def rebuilt(agg: Appointment) -> Appointment:
    return agg


# --- counsellors and slots ---------------------------------------------------------------------


def test_onboarding_records_who_and_which_subject() -> None:
    co = Counselor.onboard(
        uuid.uuid4(), display_name="Zhang", provider=c.Provider.VOLUNTEER, subject="s-1", today=TODAY
    )
    [event] = co.pending_events
    assert isinstance(event, c.CounselorOnboarded) and event.subject == "s-1" and co.active


def test_slots_of_one_counsellor_never_overlap_but_may_touch() -> None:
    co, _ = with_slot()
    with pytest.raises(Conflict) as err:
        co.publish_slot(uuid.uuid4(), at(TODAY, 9, 30), at(TODAY, 10, 30), today=TODAY)
    assert err.value.code == "slot_overlaps"
    with pytest.raises(Conflict):  # one containing the other
        co.publish_slot(uuid.uuid4(), at(TODAY, 8), at(TODAY, 11), today=TODAY)
    touching = co.publish_slot(uuid.uuid4(), at(TODAY, 10), at(TODAY, 11), today=TODAY)
    assert touching.starts_at == at(TODAY, 10)


def test_overlap_is_judged_in_absolute_time_whatever_the_offset() -> None:
    co, _ = with_slot()
    utc_same = datetime(2026, 5, 10, 1, 15, tzinfo=BEIJING.utc)  # 09:15 in Beijing
    with pytest.raises(Conflict):
        co.publish_slot(uuid.uuid4(), utc_same, utc_same + timedelta(minutes=30), today=TODAY)


@pytest.mark.parametrize(
    ("starts", "ends", "code"),
    [
        (at(TODAY, 10), at(TODAY, 10), "slot_ends_before_start"),
        (at(TODAY, 10), at(TODAY, 9), "slot_ends_before_start"),
        (at(TODAY, 10), at(TODAY, 10, 5), "slot_length"),
        (at(TODAY, 8), at(TODAY, 17), "slot_length"),
        (at(TODAY - timedelta(days=1), 9), at(TODAY - timedelta(days=1), 10), "slot_in_past"),
    ],
)
def test_slot_shape_rules(starts: datetime, ends: datetime, code: str) -> None:
    with pytest.raises(InvalidInput) as err:
        counselor().publish_slot(uuid.uuid4(), starts, ends, today=TODAY)
    assert err.value.code == code and err.value.status == 422


def test_a_deactivated_counsellor_publishes_nothing_and_deactivates_once() -> None:
    co = counselor()
    co.deactivate(today=TODAY)
    with pytest.raises(Conflict, match="deactivated"):
        co.publish_slot(uuid.uuid4(), at(TODAY, 9), at(TODAY, 10), today=TODAY)
    with pytest.raises(Conflict):
        co.deactivate(today=TODAY)


def test_counsellor_state_is_rebuilt_from_its_events() -> None:
    co, slot = with_slot()
    events = [
        c.CounselorOnboarded(
            counselor_id=uuid.UUID(co.id),
            display_name="Li Wei",
            provider=c.Provider.PARTNER,
            subject="counselor-1",
            onboarded_on=TODAY,
        ),
        c.SlotPublished(
            slot_id=slot.slot_id,
            counselor_id=uuid.UUID(co.id),
            starts_at=slot.starts_at,
            ends_at=slot.ends_at,
        ),
    ]
    again = Counselor.rehydrate(co.id, events)
    assert again.slots == co.slots and again.subject == "counselor-1" and again.version == 2


# --- booking -------------------------------------------------------------------------------------


def test_booking_names_the_client_only_by_reference() -> None:
    co, slot = with_slot()
    appt = Appointment.book(
        uuid.uuid4(), counselor=co, slot_id=slot.slot_id, slot_taken=False, client=MEMBER, today=TODAY
    )
    [event] = appt.pending_events
    assert isinstance(event, c.AppointmentBooked)
    assert event.client_ref == MEMBER.ref and set(event.model_dump()) == {
        "appointment_id",
        "slot_id",
        "counselor_id",
        "client_ref",
        "client_kind",
        "starts_at",
        "ends_at",
        "booked_on",
    }


def test_a_taken_slot_is_slot_taken() -> None:
    co, slot = with_slot()
    with pytest.raises(Conflict) as err:
        Appointment.book(
            uuid.uuid4(), counselor=co, slot_id=slot.slot_id, slot_taken=True, client=MEMBER, today=TODAY
        )
    assert err.value.code == "slot_taken" and err.value.status == 409


def test_booking_refuses_unknown_past_and_inactive_slots() -> None:
    co, slot = with_slot()
    with pytest.raises(NotFound):
        Appointment.book(
            uuid.uuid4(), counselor=co, slot_id=uuid.uuid4(), slot_taken=False, client=MEMBER, today=TODAY
        )
    with pytest.raises(Conflict) as err:
        Appointment.book(
            uuid.uuid4(),
            counselor=co,
            slot_id=slot.slot_id,
            slot_taken=False,
            client=MEMBER,
            today=TODAY + timedelta(days=1),
        )
    assert err.value.code == "slot_in_past"
    co.deactivate(today=TODAY)
    with pytest.raises(Conflict) as err:
        Appointment.book(
            uuid.uuid4(), counselor=co, slot_id=slot.slot_id, slot_taken=False, client=MEMBER, today=TODAY
        )
    assert err.value.code == "counselor_inactive"


# --- lifecycle -------------------------------------------------------------------------------------


def test_only_the_assigned_counsellor_completes() -> None:
    co, appt = booked()
    with pytest.raises(domain.NotAssigned) as err:
        appt.complete(actor_subject="counselor-2", assigned_subject=co.subject, today=TODAY)
    assert err.value.status == 403
    appt.complete(actor_subject="counselor-1", assigned_subject=co.subject, today=TODAY)
    assert appt.status is Status.COMPLETED
    [event] = appt.pending_events
    assert "notes" not in event.model_dump()


def test_sessions_are_not_closed_before_their_day() -> None:
    co, appt = booked(TODAY + timedelta(days=1))
    with pytest.raises(Conflict) as err:
        appt.complete(actor_subject=co.subject, assigned_subject=co.subject, today=TODAY)
    assert err.value.code == "session_not_started"
    with pytest.raises(Conflict):
        appt.no_show(today=TODAY)
    appt.cancel(by=c.CancelledBy.CLIENT, today=TODAY)  # cancelling ahead is the point
    assert appt.status is Status.CANCELLED


@pytest.mark.parametrize("first", ["cancel", "complete", "no_show"])
def test_a_closed_appointment_stays_closed(first: str) -> None:
    co, appt = booked()
    actions = {
        "cancel": lambda: appt.cancel(by=c.CancelledBy.COUNSELOR, today=TODAY),
        "complete": lambda: appt.complete(actor_subject=co.subject, assigned_subject=co.subject, today=TODAY),
        "no_show": lambda: appt.no_show(today=TODAY),
    }
    actions[first]()
    for action in actions.values():
        with pytest.raises(Conflict) as err:
            action()
        assert err.value.code == "appointment_closed"


def test_appointment_is_rebuilt_from_its_events() -> None:
    co, appt = booked()
    appt.no_show(today=TODAY)
    events = [
        c.AppointmentBooked(
            appointment_id=uuid.UUID(appt.id),
            slot_id=appt.slot_id,  # type: ignore[arg-type]
            counselor_id=uuid.UUID(co.id),
            client_ref=MEMBER.ref,
            client_kind=MEMBER.kind,
            starts_at=appt.starts_at,  # type: ignore[arg-type]
            ends_at=appt.ends_at,  # type: ignore[arg-type]
            booked_on=TODAY,
        ),
        *appt.pending_events,
    ]
    again = Appointment.rehydrate(appt.id, events)
    assert again.status is Status.NO_SHOW and again.client_ref == MEMBER.ref


# --- residents ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["13800138000", "+86 138-0013-8000", "0086 13800138000", "(138) 0013 8000"])
def test_phone_numbers_normalise_to_one_identity(raw: str) -> None:
    assert domain.normalize_phone(raw) == "13800138000"


@pytest.mark.parametrize("raw", ["", "12345", "1380013800a", "١٣٨٠٠١٣٨٠٠٠", "1" * 16])
def test_bad_phone_numbers_are_refused_without_echo(raw: str) -> None:
    with pytest.raises(InvalidInput) as err:
        domain.normalize_phone(raw)
    assert err.value.field == "resident.phone" and (not raw or raw not in err.value.message)


# --- who reads notes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "subject", "allowed"),
    [
        ("supervisor", "anyone", True),
        ("counselor", "counselor-1", True),
        ("counselor", "counselor-2", False),
        ("staff", "counselor-1", False),
        ("integrator", "counselor-1", False),
    ],
)
def test_notes_are_for_the_assigned_counsellor_and_the_supervisor(
    role: str, subject: str, allowed: bool
) -> None:
    refusal = domain.notes_refusal(role=role, subject=subject, assigned_subject="counselor-1")
    assert (refusal is None) is allowed


def test_no_counsellor_reads_notes_of_an_appointment_that_does_not_exist() -> None:
    assert domain.notes_refusal(role="counselor", subject="counselor-1", assigned_subject=None)


# --- every event accounted for -----------------------------------------------------------------------


def test_every_event_type_is_handled_or_ignored() -> None:
    assert projections.own.unaccounted(c.registry) == []
    assert projections.members.unaccounted(m.registry) == []
    counselor_types = {c.CounselorOnboarded, c.CounselorDeactivated, c.SlotPublished}
    assert Counselor.accounted_events() == counselor_types
    assert Appointment.accounted_events() == set(c.registry.types()) - counselor_types


def test_domain_module_is_pure() -> None:
    source = Path(domain.__file__).read_text()
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    stdlib = {"__future__", "re", "uuid", "dataclasses", "datetime", "enum"}
    allowed = ("shared.aggregate", "shared.contracts", "shared.events")
    assert {mod for mod in imported if mod not in stdlib and not mod.startswith(allowed)} == set()
    assert "today()" not in source and ".now(" not in source


def test_an_instant_late_on_9999_12_31_utc_is_the_last_beijing_date_not_an_overflow() -> None:
    from datetime import UTC, date, datetime

    from services.counseling.domain import beijing_day

    assert beijing_day(datetime(9999, 12, 31, 20, 0, tzinfo=UTC)) == date.max
    assert beijing_day(datetime(2026, 12, 2, 16, 0, tzinfo=UTC)) == date(2026, 12, 3)  # midnight
