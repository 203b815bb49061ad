"""Every rule of services/mediation (calendar, periods, domain), pure: no database, no broker, no clock."""

from __future__ import annotations

import ast
import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from services.mediation import calendar, domain, periods, projections
from services.mediation.domain import Case, Room, Status, UnionNode
from shared.aggregate import Conflict, InvalidInput, NotFound
from shared.clock import beijing_date
from shared.contracts import mediation as c
from shared.contracts import membership as m

BEIJING = timezone(timedelta(hours=8))
STREET = UnionNode(uuid.uuid4(), "street", None)


def _tree() -> tuple[UnionNode, UnionNode, UnionNode]:
    municipal = UnionNode(uuid.uuid4(), "municipal", None)
    district = UnionNode(uuid.uuid4(), "district", municipal.union_id)
    street = UnionNode(uuid.uuid4(), "street", district.union_id)
    return municipal, district, street


def _received(
    received_on: date = date(2026, 3, 2), learned_on: date = date(2026, 2, 1), station: UnionNode = STREET
) -> Case:
    case = Case(str(uuid.uuid4()))
    case.receive(
        number="SY-2026-0001",
        station=station,
        party=c.Party.WORKER,
        member_id=None,
        category=c.Category.WAGES,
        amount=Decimal("8600.00"),
        learned_on=learned_on,
        received_on=received_on,
        today=received_on,
    )
    case.mark_saved()
    return case


# --- the calendar -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (date(2026, 10, 1), False),  # National Day
        (date(2026, 10, 7), False),
        (date(2026, 10, 8), True),
        (date(2026, 10, 10), True),  # a Saturday worked (调休上班)
        (date(2026, 10, 11), False),  # an ordinary Sunday
        (date(2026, 2, 14), True),  # Saturday before the Spring Festival, worked
        (date(2026, 2, 23), False),  # last day of the Spring Festival (a Monday)
        (date(2026, 1, 4), True),  # Sunday worked after New Year
        (date(2025, 9, 28), True),  # Sunday worked before National Day 2025
        (date(2025, 10, 8), False),
        (date(2025, 5, 5), False),
        (date(2027, 1, 1), True),  # 2027 not in the calendar: a Friday, counted as working
    ],
)
def test_calendar_knows_holidays_and_shifted_working_days(day: date, working: bool) -> None:
    assert calendar.is_working_day(day) is working


def test_calendar_years_are_marked() -> None:
    assert calendar.covers(date(2025, 6, 1)) and calendar.covers(date(2026, 12, 31))
    assert not calendar.covers(date(2027, 1, 1))
    # Each notice's days off are the published counts: 2026 = 3+9+3+5+3+3+7.
    assert len(calendar.NOTICES[2026].days_off) == 33
    assert len(calendar.NOTICES[2025].days_off) == 1 + 8 + 3 + 5 + 3 + 8


# --- the 15-day mediation period ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("received", "deadline"),
    [
        (date(2026, 3, 2), date(2026, 3, 17)),  # Mon + 15 = Tue: working, unchanged
        (date(2026, 3, 6), date(2026, 3, 23)),  # + 15 = Sat 21st: next working day is Mon 23rd
        (date(2026, 9, 16), date(2026, 10, 8)),  # + 15 = Oct 1 (National Day): ends Oct 8
        (date(2026, 9, 22), date(2026, 10, 8)),  # + 15 = Oct 7, last holiday: Oct 8
        (date(2026, 9, 25), date(2026, 10, 10)),  # + 15 = Oct 10, a Saturday worked: unchanged
        (date(2026, 1, 30), date(2026, 2, 14)),  # + 15 = Sat Feb 14, worked: unchanged
        (date(2026, 2, 1), date(2026, 2, 24)),  # + 15 = Feb 16, Spring Festival: Tue Feb 24
    ],
)
def test_mediation_deadline_counts_like_the_civil_code(received: date, deadline: date) -> None:
    assert periods.MEDIATION.last_day(received) == deadline


def test_new_year_2026_rolls_to_the_worked_sunday() -> None:
    # Dec 17 + 15 = Jan 1 2026 (holiday), Jan 2-3 holidays, Jan 4 a Sunday that is worked.
    assert periods.MEDIATION.last_day(date(2025, 12, 17)) == date(2026, 1, 4)


def test_day_of_receipt_is_not_counted() -> None:
    received = date(2026, 3, 2)
    assert (periods.MEDIATION.last_day(received) - received).days == 15


# --- the one-year arbitration limit -------------------------------------------------------------


@pytest.mark.parametrize(
    ("learned", "limit"),
    [
        (date(2025, 3, 17), date(2026, 3, 17)),  # corresponding day, a Tuesday
        (date(2025, 10, 1), date(2026, 10, 8)),  # Oct 1 2026 is National Day
        (date(2025, 2, 14), date(2026, 2, 14)),  # a Saturday worked in 2026
        (date(2025, 2, 15), date(2026, 2, 24)),  # Spring Festival 2026, then Feb 24
        (date(2024, 2, 29), date(2025, 2, 28)),  # no Feb 29 in 2025: the month's last day (Fri)
        (date(2025, 5, 31), date(2026, 6, 1)),  # a Sunday: Monday
    ],
)
def test_arbitration_limit_is_one_year_on_the_corresponding_day(learned: date, limit: date) -> None:
    assert periods.ARBITRATION.last_day(learned) == limit


def test_periods_are_data_with_their_source() -> None:
    assert "art. 14" in periods.MEDIATION.source and periods.MEDIATION.length == 15
    assert "art. 27" in periods.ARBITRATION.source and periods.ARBITRATION.unit is periods.Unit.YEARS


def test_beijing_date_of_a_late_utc_instant_is_the_next_day() -> None:
    # 16:30 UTC on 16 Sep is 00:30 on 17 Sep in Beijing: a case received then counts from the 17th.
    received = beijing_date(datetime(2026, 9, 16, 16, 30, tzinfo=UTC))
    assert received == date(2026, 9, 17)
    assert periods.MEDIATION.last_day(received) == date(2026, 10, 8)


# --- intake -------------------------------------------------------------------------------------


def test_a_case_is_received_with_both_deadlines() -> None:
    case = _received(date(2026, 9, 16), date(2025, 10, 1))
    assert case.mediation_deadline == date(2026, 10, 8)
    assert case.arbitration_limit == date(2026, 10, 8)
    assert case.status is Status.OPEN and case.tier is c.Tier.STREET


def test_only_a_known_street_union_receives_cases() -> None:
    case = Case(str(uuid.uuid4()))
    kwargs = dict(
        number="X",
        party=c.Party.WORKER,
        member_id=None,
        category=c.Category.WAGES,
        amount=None,
        learned_on=date(2026, 1, 5),
        received_on=date(2026, 1, 6),
        today=date(2026, 1, 6),
    )
    with pytest.raises(Conflict) as unknown:
        case.receive(station=None, **kwargs)  # type: ignore[arg-type]
    assert unknown.value.code == "union_not_known"
    with pytest.raises(InvalidInput) as district:
        case.receive(station=UnionNode(uuid.uuid4(), "district", None), **kwargs)  # type: ignore[arg-type]
    assert district.value.code == "not_a_station"


def test_learned_after_receipt_or_received_in_future_is_refused() -> None:
    with pytest.raises(InvalidInput) as late:
        _received(date(2026, 3, 2), date(2026, 3, 3))
    assert late.value.field == "learned_on"
    case = Case(str(uuid.uuid4()))
    with pytest.raises(InvalidInput):
        case.receive(
            number="X",
            station=STREET,
            party=c.Party.WORKER,
            member_id=None,
            category=c.Category.WAGES,
            amount=None,
            learned_on=date(2026, 1, 1),
            received_on=date(2026, 3, 3),
            today=date(2026, 3, 2),
        )


def test_case_numbers_and_prefixes() -> None:
    assert domain.case_number("SY", 2026, 42) == "SY-2026-0042"
    assert domain.station_prefix("Shi Yuan Street Federation") == "SY"
    assert domain.station_prefix("石园街道总工会") == "MC"


# --- tiers ----------------------------------------------------------------------------------------


def test_escalation_follows_the_union_tree() -> None:
    municipal, district, street = _tree()
    case = _received(station=street)
    target = case.escalate(ancestors=[district, municipal], today=date(2026, 3, 10))
    assert target == district and case.tier is c.Tier.DISTRICT and case.status is Status.ESCALATED
    assert case.handling_union_id == district.union_id
    assert case.mediation_deadline == periods.MEDIATION.last_day(date(2026, 3, 10))
    case.mark_saved()
    assert case.escalate(ancestors=[municipal], today=date(2026, 3, 12)) == municipal
    case.mark_saved()
    with pytest.raises(Conflict) as top:
        case.escalate(ancestors=[], today=date(2026, 3, 13))
    assert top.value.code == "no_higher_tier"


def test_escalation_skips_unions_that_are_no_tier_and_needs_a_known_parent() -> None:
    _, district, street = _tree()
    case = _received(station=street)
    with pytest.raises(Conflict) as unknown:
        case.escalate(ancestors=[], today=date(2026, 3, 10))
    assert unknown.value.code == "no_higher_tier"
    odd = UnionNode(uuid.uuid4(), "grassroots", district.union_id)
    assert domain.higher_tier(c.Tier.STREET, [odd, district]) == district


# --- outcomes -------------------------------------------------------------------------------------


def test_agreement_then_fulfilment_closes_the_case() -> None:
    case = _received()
    case.agree(amount=Decimal("6000"), due_on=date(2026, 4, 1), today=date(2026, 3, 9))
    assert case.status is Status.AGREED
    case.record_fulfilment(amount=Decimal("6000"), on=date(2026, 3, 30), today=date(2026, 3, 30))
    with pytest.raises(Conflict):
        case.record_fulfilment(amount=Decimal("1"), on=date(2026, 3, 31), today=date(2026, 3, 31))
    for act in (
        lambda: case.withdraw(on=date(2026, 4, 2), today=date(2026, 4, 2)),
        lambda: case.refer(body="x", on=date(2026, 4, 2)),
    ):
        with pytest.raises(Conflict) as closed:
            act()
        assert closed.value.code == "case_closed"


def test_refusal_keeps_the_case_open_for_referral() -> None:
    case = _received()
    case.employer_refuses(on=date(2026, 3, 5), today=date(2026, 3, 5))
    assert case.status is Status.OPEN and case.employer_refused
    case.refer(body="顺义区劳动人事争议仲裁委员会", on=date(2026, 3, 6))
    assert case.status is Status.REFERRED


# --- the sweep ------------------------------------------------------------------------------------


def test_sweep_flags_a_case_the_day_after_its_deadline_and_only_once() -> None:
    case = _received(date(2026, 9, 16), date(2026, 9, 1))  # deadline 2026-10-08
    assert case.sweep(date(2026, 10, 8)) == []
    assert case.sweep(date(2026, 10, 9)) == ["overdue"]
    [event] = case.pending_events
    assert isinstance(event, c.MediationDeadlinePassed) and event.mediation_deadline == date(2026, 10, 8)
    case.mark_saved()
    assert case.sweep(date(2026, 10, 10)) == []
    replayed = Case.rehydrate(case.id, [_received_event(case), event])
    assert replayed.sweep(date(2026, 10, 11)) == []


def _received_event(case: Case) -> c.CaseReceived:
    assert case.received_on and case.learned_on and case.mediation_deadline and case.arbitration_limit
    return c.CaseReceived(
        case_id=case.case_id,
        case_number="SY-2026-0001",
        station_union_id=STREET.union_id,
        party=c.Party.WORKER,
        category=c.Category.WAGES,
        learned_on=case.learned_on,
        received_on=case.received_on,
        mediation_deadline=case.mediation_deadline,
        arbitration_limit=case.arbitration_limit,
    )


def test_sweep_flags_a_near_arbitration_limit_once() -> None:
    case = _received(date(2026, 3, 2), date(2025, 4, 20))  # limit 2026-04-20 (Mon)
    assert case.arbitration_limit == date(2026, 4, 20)
    assert case.sweep(date(2026, 3, 20)) == ["overdue"]  # 31 days left: not yet near
    case.mark_saved()
    assert case.sweep(date(2026, 3, 21)) == ["limit_near"]  # 30 days left
    case.mark_saved()
    assert case.sweep(date(2026, 3, 22)) == []


def test_closed_cases_are_not_swept() -> None:
    case = _received()
    case.withdraw(on=date(2026, 3, 3), today=date(2026, 3, 3))
    case.mark_saved()
    assert case.sweep(date(2027, 1, 1)) == []


# --- the room -------------------------------------------------------------------------------------


def _at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 3, day, hour, minute, tzinfo=BEIJING)


def test_the_room_never_holds_two_overlapping_sessions() -> None:
    room = Room(str(domain.room_id(STREET.union_id)))
    room.book(
        union_id=STREET.union_id,
        session_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        starts_at=_at(9, 9),
        ends_at=_at(9, 11),
    )
    with pytest.raises(Conflict) as taken:
        room.book(
            union_id=STREET.union_id,
            session_id=uuid.uuid4(),
            case_id=uuid.uuid4(),
            starts_at=_at(9, 10, 59),
            ends_at=_at(9, 12),
        )
    assert taken.value.code == "room_taken"
    # Back to back is fine (half-open), and the same hour in UTC spelling is the same instant.
    room.book(
        union_id=STREET.union_id,
        session_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        starts_at=_at(9, 11),
        ends_at=_at(9, 12),
    )
    with pytest.raises(Conflict):
        room.book(
            union_id=STREET.union_id,
            session_id=uuid.uuid4(),
            case_id=uuid.uuid4(),
            starts_at=datetime(2026, 3, 9, 1, 30, tzinfo=UTC),  # 09:30 Beijing
            ends_at=datetime(2026, 3, 9, 1, 45, tzinfo=UTC),
        )
    with pytest.raises(InvalidInput):
        room.book(
            union_id=STREET.union_id,
            session_id=uuid.uuid4(),
            case_id=uuid.uuid4(),
            starts_at=_at(9, 14),
            ends_at=_at(9, 14),
        )


def test_each_union_has_its_own_room() -> None:
    assert domain.room_id(STREET.union_id) == domain.room_id(STREET.union_id)
    assert domain.room_id(STREET.union_id) != domain.room_id(uuid.uuid4())


def test_minutes_belong_to_the_sessions_mediator() -> None:
    case = _received()
    session = uuid.uuid4()
    case.schedule_session(
        session_id=session,
        room_id=uuid.uuid4(),
        starts_at=_at(9, 9),
        ends_at=_at(9, 10),
        mediator="mediator-1",
        parties_present=[],
        today=date(2026, 3, 2),
    )
    assert case.may_keep_minutes(session, "mediator-1", supervisor=False)
    assert not case.may_keep_minutes(session, "mediator-2", supervisor=False)
    assert case.may_keep_minutes(session, "anyone", supervisor=True)
    case.record_minutes(session, by="mediator-1")
    with pytest.raises(Conflict):
        case.record_minutes(session, by="mediator-1")


def test_a_cancelled_session_frees_its_time_in_the_room_and_cannot_be_cancelled_twice() -> None:
    case, room_id = _received(), domain.room_id(STREET.union_id)
    room = Room(str(room_id))
    session = uuid.uuid4()
    room.book(
        union_id=STREET.union_id,
        session_id=session,
        case_id=case.case_id,
        starts_at=_at(9, 9),
        ends_at=_at(9, 11),
    )
    case.schedule_session(
        session_id=session,
        room_id=room_id,
        starts_at=_at(9, 9),
        ends_at=_at(9, 11),
        mediator="m",
        parties_present=[],
        today=date(2026, 3, 2),
    )
    room.mark_saved()
    case.mark_saved()
    case.cancel_session(session, today=date(2026, 3, 9))  # the same day, before or after it starts
    room.release_session(session_id=session, case_id=case.case_id)
    [cancelled], [released] = case.pending_events, room.pending_events
    case.mark_saved()
    room.mark_saved()
    assert isinstance(cancelled, c.SessionCancelled) and cancelled.room_id == room_id
    assert isinstance(released, c.RoomReleased) and released.cause is c.ReleaseCause.SESSION_CANCELLED
    assert released.station_union_id == STREET.union_id
    room.book(  # the same hours for another case
        union_id=STREET.union_id,
        session_id=uuid.uuid4(),
        case_id=uuid.uuid4(),
        starts_at=_at(9, 9),
        ends_at=_at(9, 11),
    )
    with pytest.raises(Conflict) as again:
        case.cancel_session(session, today=date(2026, 3, 9))
    assert again.value.code == "session_cancelled"
    with pytest.raises(NotFound):
        case.cancel_session(uuid.uuid4(), today=date(2026, 3, 9))


def test_a_held_session_cannot_be_cancelled() -> None:
    case = _received()
    past, minuted = uuid.uuid4(), uuid.uuid4()
    for session, day in ((past, 9), (minuted, 12)):
        case.schedule_session(
            session_id=session,
            room_id=uuid.uuid4(),
            starts_at=_at(day, 9),
            ends_at=_at(day, 10),
            mediator="m",
            parties_present=[],
            today=date(2026, 3, 2),
        )
    case.record_minutes(minuted, by="m")
    for session in (past, minuted):
        with pytest.raises(Conflict) as held:
            case.cancel_session(session, today=date(2026, 3, 10))
        assert held.value.code == "session_held"
    # 23:30 UTC on the 8th is the 9th in Beijing: held the day after, not the same evening.
    late = uuid.uuid4()
    case.schedule_session(
        session_id=late,
        room_id=uuid.uuid4(),
        starts_at=datetime(2026, 3, 8, 23, 30, tzinfo=UTC),
        ends_at=datetime(2026, 3, 9, 0, 30, tzinfo=UTC),
        mediator="m",
        parties_present=[],
        today=date(2026, 3, 2),
    )
    case.cancel_session(late, today=date(2026, 3, 9))


def test_room_released_v1_reads_as_a_withdrawal() -> None:
    ids = {k: str(uuid.uuid4()) for k in ("room_id", "station_union_id", "session_id", "case_id")}
    event = c.registry.decode("RoomReleased", 1, {**ids, "cause": "case_withdrawn"})
    assert isinstance(event, c.RoomReleased) and event.cause is c.ReleaseCause.CASE_WITHDRAWN
    assert c.registry.decode("RoomReleased", 1, ids) == event


# --- dispatch and purity --------------------------------------------------------------------------


def test_every_event_type_is_accounted_for() -> None:
    for aggregate in (Case, Room):
        assert {t for t in c.registry.types()} - aggregate.accounted_events() == set(), aggregate
    assert projections.OWN.unaccounted(c.registry) == []
    assert projections.MEMBERSHIP.unaccounted(m.registry) == []


def test_no_event_has_a_field_for_personal_data_or_confidential_text() -> None:
    forbidden = {
        "full_name",
        "phone",
        "name",
        "national_id",
        "minutes",
        "terms",
        "claim_text",
        "reason",
        "employer",
    }
    for event in c.registry.types():
        assert not forbidden & set(event.model_fields), event.event_type


@pytest.mark.parametrize("module", ["domain", "calendar", "periods"])
def test_rule_modules_are_pure(module: str) -> None:
    source = (Path(__file__).parents[3] / "services" / "mediation" / f"{module}.py").read_text()
    imported = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    allowed_roots = {"__future__", "uuid", "dataclasses", "datetime", "decimal", "enum", "calendar"}
    for name in imported:
        assert name.split(".")[0] in allowed_roots or name.startswith(
            ("shared.aggregate", "shared.events", "shared.contracts", "services.mediation")
        ), name


# --- the issue-14 review's rules ------------------------------------------------------------------


def test_a_default_prefix_another_station_has_gets_a_letter_added() -> None:
    """Found by the issue-14 review: two stations' defaults collided (``Shi Yuan``, ``Sha Yu``)."""
    assert domain.station_prefix("Sha Yu Street", {"SY"}) == "SYA"
    assert domain.station_prefix("Sha Yu Street", {"SY", "SYA", "SYB"}) == "SYC"
    assert domain.station_prefix("沙峪街道", {"MC"}) == "MCA"
    every = {"SY"} | {f"SY{a}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
    assert domain.station_prefix("Sha Yu", every) == "SYAA"
    every |= {f"SY{a}{b}" for a in "ABCDEFGHIJKLMNOPQRSTUVWXYZ" for b in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
    with pytest.raises(Conflict) as exhausted:
        domain.station_prefix("Sha Yu", every)
    assert (exhausted.value.code, exhausted.value.field) == ("prefix_taken", "case_prefix")


def test_a_case_is_received_from_2008_05_01() -> None:
    """Found by the issue-14 review: a case received in the year 1 was numbered and swept."""
    assert _received(date(2008, 5, 1), date(2008, 5, 1)).received_on == date(2008, 5, 1)
    with pytest.raises(InvalidInput) as early:
        _received(date(2008, 4, 30), date(2008, 4, 30))
    assert early.value.field == "received_on"


@pytest.mark.parametrize(
    ("act", "field"),
    [
        (lambda case, on: case.withdraw(on=on, today=date(2026, 3, 10)), "on"),
        (lambda case, on: case.employer_refuses(on=on, today=date(2026, 3, 10)), "on"),
    ],
)
def test_outcomes_are_dated_between_receipt_and_today(act: object, field: str) -> None:
    """Found by the issue-14 review: 0001-01-01 and 9999-12-31 were recorded as facts."""
    assert callable(act)
    for wrong in (date(1, 1, 1), date(2026, 3, 1), date(2026, 3, 11), date(9999, 12, 31)):
        with pytest.raises(InvalidInput) as refused:
            act(_received(), wrong)  # received 2026-03-02
        assert refused.value.field == field
    for right in (date(2026, 3, 2), date(2026, 3, 10)):
        case = _received()
        act(case, right)
        assert case.pending_events


def test_a_fulfilment_is_dated_between_receipt_and_today() -> None:
    case = _received()
    case.agree(amount=Decimal("10"), due_on=date(2026, 4, 1), today=date(2026, 3, 9))
    for wrong in (date(2026, 3, 1), date(2026, 3, 11)):
        with pytest.raises(InvalidInput) as refused:
            case.record_fulfilment(amount=Decimal("10"), on=wrong, today=date(2026, 3, 10))
        assert refused.value.field == "fulfilled_on"
    case.record_fulfilment(amount=Decimal("10"), on=date(2026, 3, 10), today=date(2026, 3, 10))


def test_a_sweep_runs_for_today_or_a_past_day() -> None:
    """Found by the issue-14 review: a sweep dated in the future reported deadlines early."""
    domain.check_sweep_day(date(2026, 3, 10), today=date(2026, 3, 10))
    domain.check_sweep_day(date(2020, 1, 1), today=date(2026, 3, 10))
    with pytest.raises(InvalidInput) as ahead:
        domain.check_sweep_day(date(2026, 3, 11), today=date(2026, 3, 10))
    assert ahead.value.field == "on"


def test_a_session_starts_at_most_366_days_ahead() -> None:
    """Found by the issue-14 review: 9999-12-31T16:00Z was booked and its cancel was a 500."""
    today = date(2026, 3, 2)
    last = datetime(2027, 3, 3, 0, 0, tzinfo=BEIJING)  # Beijing midnight of today + 366 days
    domain.check_session_window(last, last + timedelta(hours=1), today=today)
    for starts_at, field in (
        (last + timedelta(minutes=1), "starts_at"),
        (datetime(9999, 12, 31, 16, 0, tzinfo=UTC), "starts_at"),
    ):
        with pytest.raises(InvalidInput) as far:
            domain.check_session_window(starts_at, starts_at + timedelta(hours=1), today=today)
        assert far.value.field == field
    with pytest.raises(InvalidInput) as long:
        domain.check_session_window(last, last + timedelta(hours=13), today=today)
    assert long.value.field == "ends_at"


def test_a_session_at_the_end_of_9999_in_utc_is_cancelled_without_overflow() -> None:
    """A session stored before the bound (year 10000 in Beijing) compares with Beijing midnight."""
    case = _received()
    session = uuid.uuid4()
    case._raise(
        c.MediationSessionScheduled(
            case_id=case.case_id,
            session_id=session,
            room_id=uuid.uuid4(),
            starts_at=datetime(9999, 12, 31, 16, 0, tzinfo=UTC),
            ends_at=datetime(9999, 12, 31, 17, 0, tzinfo=UTC),
            mediator="m",
            parties_present=[],
        )
    )
    case.mark_saved()
    case.cancel_session(session, today=date(2026, 3, 2))
    assert isinstance(case.pending_events[0], c.SessionCancelled)


def test_minutes_of_a_cancelled_session_are_refused() -> None:
    """Found by the issue-14 review: minutes were recorded for a session never held."""
    case = _received()
    session = uuid.uuid4()
    case.schedule_session(
        session_id=session,
        room_id=uuid.uuid4(),
        starts_at=_at(9, 9),
        ends_at=_at(9, 10),
        mediator="m",
        parties_present=[],
        today=date(2026, 3, 2),
    )
    case.mark_saved()
    case.cancel_session(session, today=date(2026, 3, 2))
    case.mark_saved()
    with pytest.raises(Conflict) as cancelled:
        case.record_minutes(session, by="m")
    assert cancelled.value.code == "session_cancelled"


def test_a_case_knows_every_union_that_handled_it_and_every_room_it_holds() -> None:
    """Found by the issue-14 review: writes were 403 (not 404) to unions that never handled the
    case, and a withdrawal after escalation left the station's room booked."""
    municipal, district, street = _tree()
    case = _received(station=street)
    station_room, district_room = domain.room_id(street.union_id), domain.room_id(district.union_id)
    for room, day in ((station_room, 9), (station_room, 10)):
        case.schedule_session(
            session_id=uuid.uuid4(),
            room_id=room,
            starts_at=_at(day, 9),
            ends_at=_at(day, 10),
            mediator="m",
            parties_present=[],
            today=date(2026, 3, 2),
        )
    case.escalate(ancestors=[district, municipal], today=date(2026, 3, 5))
    case.schedule_session(
        session_id=uuid.uuid4(),
        room_id=district_room,
        starts_at=_at(11, 9),
        ends_at=_at(11, 10),
        mediator="m",
        parties_present=[],
        today=date(2026, 3, 5),
    )
    assert case.handled_by == [street.union_id, district.union_id]
    assert case.rooms_booked() == sorted([station_room, district_room], key=str)


def test_a_withdrawal_releases_the_room_in_the_rooms_own_name() -> None:
    street = _tree()[2]
    room = Room(str(domain.room_id(street.union_id)))
    session, case_id = uuid.uuid4(), uuid.uuid4()
    room.book(
        union_id=street.union_id, session_id=session, case_id=case_id, starts_at=_at(9, 9), ends_at=_at(9, 10)
    )
    room.mark_saved()
    room.release_case(case_id=case_id, since=domain.beijing_midnight(date(2026, 3, 9)))
    [released] = room.pending_events
    assert isinstance(released, c.RoomReleased) and released.station_union_id == street.union_id
    assert released.cause is c.ReleaseCause.CASE_WITHDRAWN
