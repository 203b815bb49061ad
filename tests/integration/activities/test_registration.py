"""Registration on the real PostgreSQL and Kafka: places, the waitlist, eligibility, idempotency."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from shared.tables import events
from tests.integration.activities.conftest import MOTHERS_DAY, STAFF, ActivitiesUnderTest

pytestmark = pytest.mark.integration


async def stored_types(a: ActivitiesUnderTest, activity_id: str) -> list[str]:
    async with a.runtime.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(events.c.event_type).where(events.c.stream_id == activity_id).order_by(events.c.version)
        )
        return list(rows.scalars())


async def test_fifty_racing_for_the_last_five_places_confirm_exactly_five_and_queue_the_rest(
    activities: ActivitiesUnderTest,
) -> None:
    a = activities
    activity_id = await a.schedule(capacity=10)
    early = await a.members(5)
    for member in early:
        assert (await a.register(activity_id, {"member_id": str(member)})).json()["status"] == "confirmed"
    racers = await a.members(50)

    started = time.perf_counter()
    answers = await asyncio.gather(*(a.register(activity_id, {"member_id": str(m)}) for m in racers))
    elapsed = time.perf_counter() - started
    assert [r.status_code for r in answers] == [201] * 50, [r.text for r in answers if r.status_code != 201]
    bodies = [r.json() for r in answers]
    confirmed = [b for b in bodies if b["status"] == "confirmed"]
    waitlisted = [b for b in bodies if b["status"] == "waitlisted"]
    assert len(confirmed) == 5 and len(waitlisted) == 45
    assert sorted(b["waitlist_position"] for b in waitlisted) == list(range(1, 46))
    print(f"50 concurrent registrations answered in {elapsed:.2f}s")

    state = await a.get(f"/v1/activities/{activity_id}")
    assert (state["capacity"], state["confirmed_count"], state["waitlist_count"]) == (10, 10, 45)
    listed = (await a.get(f"/v1/activities/{activity_id}/registrations?status=waitlisted"))["items"]
    # The list's order is the answers' order: position n went to the n-th to be waitlisted.
    by_position = {b["waitlist_position"]: b["registration_id"] for b in waitlisted}
    assert [r["registration_id"] for r in listed] == [by_position[n] for n in range(1, 46)]
    assert [r["waitlist_position"] for r in listed] == list(range(1, 46))
    types = await stored_types(a, activity_id)
    assert types.count("RegistrationConfirmed") == 10 and types.count("RegistrationWaitlisted") == 45

    # Three concurrent cancellations promote exactly the next three in line.
    cancelled = [b["registration_id"] for b in confirmed[:3]]
    results = await asyncio.gather(
        *(
            a.http.post(f"/v1/activities/{activity_id}/registrations/{rid}/cancel", headers=STAFF)
            for rid in cancelled
        )
    )
    assert [r.status_code for r in results] == [200] * 3
    promoted = {r.json()["promoted_registration_id"] for r in results}
    assert promoted == {by_position[1], by_position[2], by_position[3]}
    assert {r.json()["status"] for r in results} == {"cancelled"}
    state = await a.get(f"/v1/activities/{activity_id}")
    assert (state["confirmed_count"], state["waitlist_count"]) == (10, 42)
    listed = (await a.get(f"/v1/activities/{activity_id}/registrations?status=waitlisted"))["items"]
    assert [r["registration_id"] for r in listed] == [by_position[n] for n in range(4, 46)]
    assert [r["waitlist_position"] for r in listed] == list(range(1, 43))


@pytest.mark.parametrize(
    ("birth_date", "accepted"),
    [("2023-05-11", False), ("2013-05-10", False), ("2023-05-10", True), ("2013-05-11", True)],
    ids=["2_years", "13_years", "3_years", "12_years"],
)
async def test_children_ages_are_checked_on_the_activity_date(
    activities: ActivitiesUnderTest, birth_date: str, accepted: bool
) -> None:
    a = activities
    activity_id = await a.schedule(audience="member_families", child_age_min=3, child_age_max=12)
    member = await a.member()
    r = await a.register(activity_id, {"member_id": str(member), "children": [{"birth_date": birth_date}]})
    if accepted:
        assert r.status_code == 201 and r.json()["status"] == "confirmed"
        return
    assert r.status_code == 409, r.text
    problem = r.json()
    assert problem["code"] == "child_age_out_of_range"
    assert problem["errors"][0]["field"] == "children.0.birth_date"
    assert r.headers["content-type"].startswith("application/problem+json")


async def test_a_member_who_left_cannot_register_and_an_unknown_one_is_told_to_retry(
    activities: ActivitiesUnderTest,
) -> None:
    a = activities
    activity_id = await a.schedule()
    gone = await a.member(left_on=date(2026, 4, 1))
    r = await a.register(activity_id, {"member_id": str(gone)})
    assert (r.status_code, r.json()["code"]) == (409, "member_not_active")
    r = await a.register(activity_id, {"member_id": str(uuid.uuid4())})
    assert (r.status_code, r.json()["code"]) == (409, "member_not_known")


async def test_the_same_request_with_its_idempotency_key_registers_once(
    activities: ActivitiesUnderTest,
) -> None:
    a = activities
    activity_id = await a.schedule()
    member = await a.member()
    key = {"Idempotency-Key": f"reg-{uuid.uuid4()}"}
    answers = await asyncio.gather(
        *(a.register(activity_id, {"member_id": str(member)}, **key) for _ in range(5))
    )
    assert {r.status_code for r in answers} == {201}
    assert len({r.json()["registration_id"] for r in answers}) == 1
    assert (await stored_types(a, activity_id)).count("RegistrationConfirmed") == 1
    again = await a.register(activity_id, {"member_id": str(member)}, **key)
    assert again.json() == answers[0].json() and again.headers.get("Idempotent-Replayed") == "true"
    # Without the key it is a second registration, which the rules refuse.
    twice = await a.register(activity_id, {"member_id": str(member)})
    assert (twice.status_code, twice.json()["code"]) == (409, "already_registered")


async def test_rule_refusals_and_bad_input(activities: ActivitiesUnderTest) -> None:
    a = activities
    activity_id = await a.schedule()
    member = await a.member()
    cases: list[tuple[dict[str, Any], int, str]] = [
        ({}, 422, "member_or_resident_required"),
        ({"resident": {"full_name": "Wang Fang", "phone": "13800001111"}}, 409, "residents_not_admitted"),
        ({"member_id": str(member), "session_id": str(uuid.uuid4())}, 422, "unknown_session"),
        ({"member_id": str(member), "surprise": 1}, 422, "validation_error"),
    ]
    for body, status, code in cases:
        r = await a.register(activity_id, body)
        assert (r.status_code, r.json().get("code")) == (status, code), (body, r.text)
    r = await a.register(str(uuid.uuid4()), {"member_id": str(member)})
    assert r.status_code == 404
    r = await a.http.post(
        "/v1/activities",
        json={
            "kind": "lecture",
            "title": "x",
            "starts_at": "2026-05-10T09:00:00",  # no offset
            "ends_at": "2026-05-10T10:00:00+08:00",
            "venue": "v",
            "capacity": 1,
            "audience": "members",
        },
        headers=STAFF,
    )
    assert r.status_code == 422 and r.json()["errors"][0]["field"] == "starts_at"


async def test_closing_the_window_and_cancelling_the_activity(activities: ActivitiesUnderTest) -> None:
    a = activities
    activity_id = await a.schedule(capacity=1)
    first, second, late = await a.members(3)
    ids = [
        (await a.register(activity_id, {"member_id": str(m)})).json()["registration_id"]
        for m in (first, second)
    ]
    r = await a.http.post(f"/v1/activities/{activity_id}/registration/close", headers=STAFF)
    assert r.status_code == 200
    r = await a.register(activity_id, {"member_id": str(late)})
    assert (r.status_code, r.json()["code"]) == (409, "registration_closed")

    r = await a.http.post(
        f"/v1/activities/{activity_id}/cancel", json={"reason": "storm warning"}, headers=STAFF
    )
    assert r.status_code == 200 and sorted(r.json()["cancelled_registration_ids"]) == sorted(ids)
    types = await stored_types(a, activity_id)
    assert types[-3:] == ["ActivityCancelled", "RegistrationCancelled", "RegistrationCancelled"]
    assert "WaitlistPromoted" not in types  # a cancelled activity promotes nobody
    state = await a.get(f"/v1/activities/{activity_id}")
    assert (state["status"], state["confirmed_count"], state["waitlist_count"]) == ("cancelled", 0, 0)


async def test_a_larger_capacity_promotes_at_once(activities: ActivitiesUnderTest) -> None:
    a = activities
    activity_id = await a.schedule(capacity=1)
    for member in await a.members(3):
        await a.register(activity_id, {"member_id": str(member)})
    r = await a.http.patch(
        f"/v1/activities/{activity_id}", json={"capacity": 2, "venue": "Hall B"}, headers=STAFF
    )
    assert r.status_code == 200, r.text
    assert (r.json()["confirmed_count"], r.json()["waitlist_count"], r.json()["venue"]) == (2, 1, "Hall B")
    r = await a.http.patch(f"/v1/activities/{activity_id}", json={"capacity": 1}, headers=STAFF)
    assert (r.status_code, r.json()["code"]) == (409, "capacity_below_confirmed")


async def test_sessions_of_a_carnival_day_fill_on_their_own(activities: ActivitiesUnderTest) -> None:
    a = activities
    activity_id = await a.schedule(
        kind="carnival",
        title="Psychology carnival",
        capacity=3,
        audience="residents",
        sessions=[{"title": "Games zone", "capacity": 1}, {"title": "Heart post-it wall", "capacity": 2}],
    )
    sessions = (await a.get(f"/v1/activities/{activity_id}"))["sessions"]
    games, wall = sessions[0]["session_id"], sessions[1]["session_id"]
    member = await a.member()
    r1 = await a.register(activity_id, {"member_id": str(member), "session_id": games})
    r2 = await a.register(activity_id, {"member_id": str(member), "session_id": wall})
    resident = {"resident": {"full_name": "Li Na", "phone": "13900002222"}, "session_id": games}
    r3 = await a.register(activity_id, resident)
    assert [r.json()["status"] for r in (r1, r2, r3)] == ["confirmed", "confirmed", "waitlisted"]
    state = await a.get(f"/v1/activities/{activity_id}")
    assert [(s["confirmed_count"], s["waitlist_count"]) for s in state["sessions"]] == [(1, 1), (1, 0)]


async def test_check_in_on_the_day_feedback_and_its_summary(activities: ActivitiesUnderTest) -> None:
    a = activities
    activity_id = await a.schedule(capacity=3)
    ids = [
        (await a.register(activity_id, {"member_id": str(m)})).json()["registration_id"]
        for m in await a.members(3)
    ]
    base = f"/v1/activities/{activity_id}/registrations"
    r = await a.http.post(f"{base}/{ids[0]}/check-in", headers=STAFF)
    assert (r.status_code, r.json()["code"]) == (409, "not_activity_day")
    a.clock.now = MOTHERS_DAY + timedelta(minutes=10)
    for rid in ids[:2]:
        assert (await a.http.post(f"{base}/{rid}/check-in", headers=STAFF)).status_code == 200
    r = await a.http.post(f"{base}/{ids[2]}/feedback", json={"rating": 5}, headers=STAFF)
    assert (r.status_code, r.json()["code"]) == (409, "not_attended")
    a.clock.now = MOTHERS_DAY + timedelta(hours=4)
    for rid, rating in zip(ids[:2], (5, 4), strict=True):
        body = {"rating": rating, "comment": "The children loved the plants"}
        assert (await a.http.post(f"{base}/{rid}/feedback", json=body, headers=STAFF)).status_code == 201
    r = await a.http.post(f"{base}/{ids[0]}/feedback", json={"rating": 9}, headers=STAFF)
    assert r.status_code == 422
    summary = await a.get(f"/v1/activities/{activity_id}/feedback-summary")
    assert (summary["count"], summary["average_rating"]) == (2, 4.5)

    stats = await a.get("/v1/statistics/participation?by=activity")
    [row] = [s for s in stats["items"] if s["key"] == activity_id]
    assert (row["registrations"], row["confirmed"], row["attended"], row["turned_away"]) == (3, 3, 2, 0)
