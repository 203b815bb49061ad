"""The activities domain: places, the FIFO waitlist, eligibility, the day and after. Pure."""

from __future__ import annotations

import ast
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.activities import domain
from services.activities.domain import Activity, Interest, MemberStanding, Registrant, SessionPlan
from shared.aggregate import Conflict, DomainError, InvalidInput
from shared.clock import BEIJING
from shared.contracts import activities as c
from shared.contracts.activities import ActivityKind, Audience, CancellationReason, RegistrationStatus
from shared.events import DomainEvent

NOW = datetime(2026, 4, 20, 9, 0, tzinfo=BEIJING)
MOTHERS_DAY = datetime(2026, 5, 10, 9, 0, tzinfo=BEIJING)
UNION = uuid.uuid4()


def active(member: uuid.UUID | None = None) -> Registrant:
    return Registrant(member=MemberStanding(member or uuid.uuid4(), known=True, active=True, union_id=UNION))


def scheduled(capacity: int = 2, audience: Audience = Audience.MEMBERS, **extra: Any) -> Activity:
    activity = Activity(str(uuid.uuid4()))
    fields: dict[str, object] = {
        "kind": ActivityKind.PARENT_CHILD,
        "title": "Mother's Day",
        "starts_at": MOTHERS_DAY,
        "ends_at": MOTHERS_DAY + timedelta(hours=3),
        "venue": "Flower centre",
        "capacity": capacity,
        "audience": audience,
        "now": NOW,
    }
    if audience is Audience.MEMBER_FAMILIES:
        fields |= {"child_age_min": 3, "child_age_max": 12}
    activity.schedule(**(fields | extra))  # type: ignore[arg-type]
    activity.mark_saved()
    return activity


def code_of(exc: pytest.ExceptionInfo[DomainError]) -> str:
    return exc.value.code


# --- places and the waitlist ------------------------------------------------------------------


def test_confirmed_while_places_last_then_waitlisted_in_order() -> None:
    a = scheduled(capacity=2)
    outcomes = [a.register(uuid.uuid4(), active(), now=NOW) for _ in range(5)]
    assert [o.status for o in outcomes] == ["confirmed"] * 2 + ["waitlisted"] * 3
    assert [o.waitlist_position for o in outcomes] == [None, None, 1, 2, 3]
    assert a.confirmed_count() == 2 and a.waitlist_count() == 3


def test_cancelling_a_confirmed_place_promotes_the_first_in_line() -> None:
    a = scheduled(capacity=1)
    first, second, third = (a.register(uuid.uuid4(), active(), now=NOW).registration_id for _ in range(3))
    promoted = a.cancel_registration(first, reason=CancellationReason.REQUESTED, now=NOW)
    assert promoted == second
    types = [type(e).__name__ for e in a.pending_events[-2:]]
    assert types == ["RegistrationCancelled", "WaitlistPromoted"]
    assert a.waitlist_position(third) == 1
    assert a.registration(second).status is RegistrationStatus.CONFIRMED


def test_cancelling_a_waitlisted_registration_promotes_nobody() -> None:
    a = scheduled(capacity=1)
    a.register(uuid.uuid4(), active(), now=NOW)
    waiting = a.register(uuid.uuid4(), active(), now=NOW).registration_id
    assert a.cancel_registration(waiting, reason=CancellationReason.REQUESTED, now=NOW) is None
    with pytest.raises(Conflict) as refused:
        a.cancel_registration(waiting, reason=CancellationReason.REQUESTED, now=NOW)
    assert code_of(refused) == "registration_cancelled"


def test_state_is_rebuilt_from_events_alone() -> None:
    a = scheduled(capacity=1)
    ids = [a.register(uuid.uuid4(), active(), now=NOW).registration_id for _ in range(3)]
    a.cancel_registration(ids[0], reason=CancellationReason.REQUESTED, now=NOW)
    history = [e for e in a.pending_events]
    b = Activity(a.id)
    b.schedule(
        kind=ActivityKind.PARENT_CHILD,
        title="Mother's Day",
        starts_at=MOTHERS_DAY,
        ends_at=MOTHERS_DAY + timedelta(hours=3),
        venue="Flower centre",
        capacity=1,
        audience=Audience.MEMBERS,
        now=NOW,
    )
    rebuilt = Activity.rehydrate(a.id, [*b.pending_events, *history])
    assert rebuilt.pools[None].confirmed == [ids[1]] and rebuilt.pools[None].waitlist == [ids[2]]


def test_no_double_registration() -> None:
    a = scheduled()
    member = active()
    a.register(uuid.uuid4(), member, now=NOW)
    with pytest.raises(Conflict) as refused:
        a.register(uuid.uuid4(), member, now=NOW)
    assert code_of(refused) == "already_registered"


def test_a_larger_capacity_promotes_the_waitlist_and_a_smaller_one_below_confirmed_is_refused() -> None:
    a = scheduled(capacity=1)
    [a.register(uuid.uuid4(), active(), now=NOW) for _ in range(3)]
    promoted = a.change(capacity=2, now=NOW)
    assert len(promoted) == 1 and a.confirmed_count() == 2 and a.waitlist_count() == 1
    with pytest.raises(Conflict) as refused:
        a.change(capacity=1, now=NOW)
    assert code_of(refused) == "capacity_below_confirmed"


def test_cancelling_the_activity_cancels_every_live_registration() -> None:
    a = scheduled(capacity=1)
    ids = [a.register(uuid.uuid4(), active(), now=NOW).registration_id for _ in range(2)]
    assert a.cancel(reason="rain", now=NOW) == ids
    cancelled = [e for e in a.pending_events if isinstance(e, c.RegistrationCancelled)]
    assert [e.registration_id for e in cancelled] == ids
    assert {e.reason for e in cancelled} == {CancellationReason.ACTIVITY_CANCELLED}
    assert not [e for e in a.pending_events if isinstance(e, c.WaitlistPromoted)]
    with pytest.raises(Conflict) as refused:
        a.register(uuid.uuid4(), active(), now=NOW)
    assert code_of(refused) == "activity_cancelled"


# --- sessions ---------------------------------------------------------------------------------


def test_sessions_fill_on_their_own() -> None:
    s1, s2 = uuid.uuid4(), uuid.uuid4()
    a = scheduled(
        capacity=3,
        kind=ActivityKind.CARNIVAL,
        sessions=[(s1, SessionPlan("Games zone", 1)), (s2, SessionPlan("Heart post-it wall", 2))],
    )
    member = active()
    assert a.register(uuid.uuid4(), member, session_id=s1, now=NOW).status == "confirmed"
    assert a.register(uuid.uuid4(), member, session_id=s2, now=NOW).status == "confirmed"  # another zone
    assert a.register(uuid.uuid4(), active(), session_id=s1, now=NOW).status == "waitlisted"
    with pytest.raises(InvalidInput) as refused:
        a.register(uuid.uuid4(), active(), now=NOW)
    assert code_of(refused) == "session_required"


def test_session_capacities_must_sum_to_the_capacity() -> None:
    with pytest.raises(InvalidInput) as refused:
        scheduled(capacity=5, sessions=[(uuid.uuid4(), SessionPlan("a", 1))])
    assert code_of(refused) == "capacity_not_sum_of_sessions"


# --- eligibility ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("birth", "accepted"),
    [
        (date(2023, 5, 10), True),  # 3 on the day
        (date(2023, 5, 11), False),  # 2 on the day (turns 3 the day after)
        (date(2013, 5, 11), True),  # 12 on the day
        (date(2013, 5, 10), False),  # 13 on the day
    ],
)
def test_children_must_be_in_the_age_range_on_the_activity_date(birth: date, accepted: bool) -> None:
    a = scheduled(audience=Audience.MEMBER_FAMILIES)
    if accepted:
        assert a.register(uuid.uuid4(), active(), children=[birth], now=NOW).status == "confirmed"
        return
    with pytest.raises(Conflict) as refused:
        a.register(uuid.uuid4(), active(), children=[date(2020, 1, 1), birth], now=NOW)
    assert code_of(refused) == "child_age_out_of_range"
    assert refused.value.field == "children.1.birth_date"


def test_a_family_activity_needs_children() -> None:
    with pytest.raises(InvalidInput) as refused:
        scheduled(audience=Audience.MEMBER_FAMILIES).register(uuid.uuid4(), active(), now=NOW)
    assert code_of(refused) == "children_required"


@pytest.mark.parametrize(
    ("standing", "code"),
    [
        (MemberStanding(uuid.uuid4(), known=False), "member_not_known"),
        (MemberStanding(uuid.uuid4(), known=True, active=False), "member_not_active"),
    ],
)
def test_only_known_active_members_register(standing: MemberStanding, code: str) -> None:
    with pytest.raises(Conflict) as refused:
        scheduled().register(uuid.uuid4(), Registrant(member=standing), now=NOW)
    assert code_of(refused) == code


def test_residents_only_where_the_audience_is_residents() -> None:
    resident = Registrant(resident_ref="r-1")
    with pytest.raises(Conflict) as refused:
        scheduled().register(uuid.uuid4(), resident, now=NOW)
    assert code_of(refused) == "residents_not_admitted"
    assert (
        scheduled(audience=Audience.RESIDENTS).register(uuid.uuid4(), resident, now=NOW).status == "confirmed"
    )


def test_the_registration_window() -> None:
    a = scheduled(
        registration_opens_at=NOW + timedelta(days=1), registration_closes_at=MOTHERS_DAY - timedelta(days=2)
    )
    for moment, code in [
        (NOW, "registration_not_open"),
        (MOTHERS_DAY - timedelta(days=2), "registration_closed"),
    ]:
        with pytest.raises(Conflict) as refused:
            a.register(uuid.uuid4(), active(), now=moment)
        assert code_of(refused) == code
    assert a.register(uuid.uuid4(), active(), now=NOW + timedelta(days=2)).status == "confirmed"
    a.close_registration(NOW + timedelta(days=3))
    with pytest.raises(Conflict) as refused:
        a.register(uuid.uuid4(), active(), now=NOW + timedelta(days=3))
    assert code_of(refused) == "registration_closed"


def test_scheduling_refuses_nonsense() -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"ends_at": MOTHERS_DAY}, "ends_before_start"),
        ({"starts_at": NOW - timedelta(days=1)}, "starts_in_past"),
        ({"child_age_min": 3, "child_age_max": 12}, "child_age_range_not_applicable"),
        ({"registration_closes_at": MOTHERS_DAY + timedelta(hours=1)}, "registration_closes_after_start"),
    ]
    for extra, code in cases:
        with pytest.raises(InvalidInput) as refused:
            scheduled(**extra)
        assert code_of(refused) == code


# --- the day and after ------------------------------------------------------------------------


def test_check_in_on_the_day_then_feedback_once() -> None:
    a = scheduled(capacity=1)
    rid = a.register(uuid.uuid4(), active(), now=NOW).registration_id
    waiting = a.register(uuid.uuid4(), active(), now=NOW).registration_id
    with pytest.raises(Conflict) as early:
        a.check_in(rid, NOW)
    assert code_of(early) == "not_activity_day"
    with pytest.raises(Conflict) as unconfirmed:
        a.check_in(waiting, MOTHERS_DAY)
    assert code_of(unconfirmed) == "registration_not_confirmed"
    with pytest.raises(Conflict) as absent:
        a.submit_feedback(rid, rating=5, comment=None, now=MOTHERS_DAY)
    assert code_of(absent) == "not_attended"
    a.check_in(rid, MOTHERS_DAY.astimezone(UTC))  # the Beijing date counts, whatever the offset
    a.submit_feedback(rid, rating=5, comment="lovely", now=MOTHERS_DAY + timedelta(hours=4))
    with pytest.raises(Conflict) as twice:
        a.submit_feedback(rid, rating=4, comment=None, now=MOTHERS_DAY + timedelta(hours=5))
    assert code_of(twice) == "feedback_already_given"


def test_members_leaving_lose_live_registrations_but_not_attended_ones() -> None:
    a = scheduled(capacity=1)
    member = uuid.uuid4()
    rid = a.register(uuid.uuid4(), active(member), now=NOW).registration_id
    assert a.live_registrations_of(member) == [rid]


def test_volunteers_are_active_members_once() -> None:
    a = scheduled()
    standing = MemberStanding(uuid.uuid4(), known=True, active=True)
    a.assign_volunteer(standing, role="volunteer", now=NOW)
    with pytest.raises(Conflict) as twice:
        a.assign_volunteer(standing, role="host", now=NOW)
    assert code_of(twice) == "already_volunteering"
    a.release_volunteer(standing.member_id, now=NOW)
    assert a.volunteers == {}


def test_interest_once_per_kind_while_open() -> None:
    standing = MemberStanding(uuid.uuid4(), known=True, active=True)
    Interest(str(uuid.uuid4())).register(
        standing, ActivityKind.PARENT_CHILD, already_open=False, today=NOW.date()
    )
    with pytest.raises(Conflict) as twice:
        Interest(str(uuid.uuid4())).register(
            standing, ActivityKind.PARENT_CHILD, already_open=True, today=NOW.date()
        )
    assert code_of(twice) == "interest_already_registered"


def test_age_on_counts_completed_years() -> None:
    assert domain.age_on(date(2016, 2, 29), date(2026, 2, 28)) == 9
    assert domain.age_on(date(2016, 2, 29), date(2026, 3, 1)) == 10


# --- conventions ------------------------------------------------------------------------------


def test_every_activity_event_is_accounted_for_by_the_aggregates() -> None:
    stream_types: dict[type[Activity] | type[Interest], set[type[DomainEvent]]] = {
        Activity: set(c.registry.types()) - {c.InterestRegistered},
        Interest: {c.InterestRegistered},
    }
    for aggregate, types in stream_types.items():
        assert types <= aggregate.accounted_events(), aggregate.__name__


def test_domain_module_is_pure() -> None:
    source = Path(domain.__file__).read_text()
    imported = {
        (node.module or "") if isinstance(node, ast.ImportFrom) else alias.name
        for node in ast.walk(ast.parse(source))
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    stdlib = {"__future__", "uuid", "dataclasses", "datetime", "collections.abc"}
    allowed = ("shared.aggregate", "shared.contracts")
    assert {m for m in imported if m not in stdlib and not m.startswith(allowed)} == set()
    assert "today()" not in source and ".now(" not in source


def test_every_event_type_is_handled_or_ignored_by_each_table() -> None:
    from services.activities.handlers import member_reactions
    from services.activities.projections import read_models
    from shared.contracts import membership

    assert read_models.unaccounted(c.registry) == []
    assert member_reactions.unaccounted(membership.registry) == []


def test_the_membership_timeline_accounts_for_every_activities_event() -> None:
    from services.membership.activity_timeline import timeline

    assert timeline.unaccounted(c.registry) == []
