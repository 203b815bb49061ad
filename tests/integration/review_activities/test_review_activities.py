"""Review: attacks on activities (concurrency, access, hostile input, redelivery)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from shared.tables import events
from tests.integration.activities.conftest import MOTHERS_DAY, STAFF, ActivitiesUnderTest

pytestmark = pytest.mark.integration


async def _event_count(a: ActivitiesUnderTest) -> int:
    async with a.runtime.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(events)) or 0)


def _problem(r: Any, field: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert field in r.text, r.text


async def test_one_member_racing_to_register_twice_gets_one_place(activities: ActivitiesUnderTest) -> None:
    a = activities
    activity_id = await a.schedule(capacity=1)
    [member] = await a.members(1)
    answers = await asyncio.gather(*(a.register(activity_id, {"member_id": str(member)}) for _ in range(10)))
    codes = sorted(r.status_code for r in answers)
    assert codes == [201] + [409] * 9, [r.text for r in answers]
    assert {r.json()["code"] for r in answers if r.status_code == 409} == {"already_registered"}
    listed = (await a.get(f"/v1/activities/{activity_id}/registrations"))["items"]
    assert len([r for r in listed if r["status"] != "cancelled"]) == 1


async def test_one_resident_racing_to_register_twice_gets_one_place(activities: ActivitiesUnderTest) -> None:
    a = activities
    activity_id = await a.schedule(capacity=3, audience="residents")
    bodies = [
        {"resident": {"full_name": "Li Na", "phone": p}}
        for p in ("13900001111", "139 0000 1111", "139-0000-1111")
    ]
    answers = await asyncio.gather(*(a.register(activity_id, b) for b in bodies * 3))
    assert sorted(r.status_code for r in answers) == [201] + [409] * 8, [r.text for r in answers]


async def test_cancellations_racing_promotions_leave_a_consistent_line(
    activities: ActivitiesUnderTest,
) -> None:
    a = activities
    activity_id = await a.schedule(capacity=2)
    members = await a.members(6)
    regs = [(await a.register(activity_id, {"member_id": str(m)})).json() for m in members]
    assert [r["status"] for r in regs] == ["confirmed"] * 2 + ["waitlisted"] * 4
    # Cancel both confirmed and the first two in line at once: the last two must end up confirmed.
    answers = await asyncio.gather(
        *(
            a.http.post(
                f"/v1/activities/{activity_id}/registrations/{r['registration_id']}/cancel", headers=STAFF
            )
            for r in regs[:4]
        )
    )
    assert [x.status_code for x in answers] == [200] * 4, [x.text for x in answers]
    listed = {
        r["registration_id"]: r for r in (await a.get(f"/v1/activities/{activity_id}/registrations"))["items"]
    }
    assert [listed[r["registration_id"]]["status"] for r in regs] == ["cancelled"] * 4 + ["confirmed"] * 2
    state = await a.get(f"/v1/activities/{activity_id}")
    assert (state["confirmed_count"], state["waitlist_count"]) == (2, 0)


async def test_residents_names_are_not_for_integrators_or_counsellors(
    activities: ActivitiesUnderTest,
) -> None:
    a = activities
    activity_id = await a.schedule(audience="residents")
    reg = (
        await a.register(activity_id, {"resident": {"full_name": "Qian Wu", "phone": "13712345678"}})
    ).json()
    path = f"/v1/activities/{activity_id}/registrations/{reg['registration_id']}/resident"
    for token in ("local-integrator-token", "local-counselor-token", "nonsense-token"):
        r = await a.http.get(path, headers={"Authorization": f"Bearer {token}"})
        assert r.status_code in (401, 403), (token, r.text)
        assert "Qian Wu" not in r.text and "13712345678" not in r.text
    # Another activity's id with this registration: not found, nothing revealed.
    other = await a.schedule(audience="residents")
    r = await a.http.get(
        f"/v1/activities/{other}/registrations/{reg['registration_id']}/resident", headers=STAFF
    )
    assert r.status_code == 404 and "Qian Wu" not in r.text
    for path in (f"/v1/activities/{activity_id}/registrations", f"/v1/activities/{activity_id}"):
        r = await a.http.get(path, headers={"Authorization": "Bearer local-integrator-token"})
        assert "Qian Wu" not in r.text and "13712345678" not in r.text and "5678" not in r.text


def _schedule_body(a: ActivitiesUnderTest, **over: Any) -> dict[str, Any]:
    return {
        "kind": "parent_child",
        "title": "t",
        "starts_at": MOTHERS_DAY.isoformat(),
        "ends_at": (MOTHERS_DAY + timedelta(hours=3)).isoformat(),
        "venue": "v",
        "capacity": 5,
        "audience": "members",
        "union_id": str(a.union_id),
    } | over


@pytest.mark.parametrize(
    ("over", "field"),
    [
        ({"capacity": 0}, "capacity"),
        ({"capacity": -1}, "capacity"),
        ({"capacity": "5"}, "capacity"),
        ({"capacity": 1.5}, "capacity"),
        ({"capacity": True}, "capacity"),
        ({"capacity": 10**20}, "capacity"),
        ({"starts_at": "2026-05-10T09:00:00"}, "starts_at"),
        ({"starts_at": "2026-02-30T09:00:00+08:00"}, "starts_at"),
        ({"starts_at": "9999-12-31T23:00:00-12:00", "ends_at": "9999-12-31T23:30:00-12:00"}, "starts_at"),
        ({"ends_at": "0001-01-01T00:30:00+08:00"}, "ends_at"),
        ({"title": "a\x00b"}, "title"),
        ({"title": "x" * 300}, "title"),
        ({"kind": "party"}, "kind"),
        ({"unknown_field": 1}, "unknown_field"),
        ({"child_age_min": -1, "audience": "member_families"}, "child_age_min"),
        ({"sessions": [{"title": "z", "capacity": 0}]}, "sessions.0.capacity"),
        ({"partner": {"name": "p", "kind": "alien"}}, "partner.kind"),
    ],
)
async def test_hostile_activities_are_4xx_naming_the_field_and_write_nothing(
    activities: ActivitiesUnderTest, over: dict[str, Any], field: str
) -> None:
    a = activities
    before = await _event_count(a)
    r = await a.http.post("/v1/activities", json=_schedule_body(a, **over), headers=STAFF)
    _problem(r, field)
    assert await _event_count(a) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"resident": {"full_name": "Zhou\x00", "phone": "13911112222"}}, "resident.full_name"),
        ({"resident": {"full_name": "Zhou", "phone": "not-a-phone"}}, "resident.phone"),
        ({"resident": {"full_name": "Zhou", "phone": 13911112222}}, "resident.phone"),
        ({"resident": {"full_name": "Zhou", "phone": "13911112222", "id_card": "x"}}, "resident.id_card"),
        ({"member_id": "not-a-uuid"}, "member_id"),
        ({"member_id": 5}, "member_id"),
        (
            {"member_id": str(uuid.uuid4()), "resident": {"full_name": "Z", "phone": "13911112222"}},
            "member_id",
        ),
        (
            {"member_id": str(uuid.uuid4()), "children": [{"birth_date": "2020-02-30"}]},
            "children.0.birth_date",
        ),
        (
            {"member_id": str(uuid.uuid4()), "children": [{"birth_date": "2020-02-01T00:00:00Z"}]},
            "children.0.birth_date",
        ),
    ],
)
async def test_hostile_registrations_are_4xx_naming_the_field_without_echo(
    activities: ActivitiesUnderTest, body: dict[str, Any], field: str
) -> None:
    a = activities
    activity_id = await a.schedule(audience="residents")
    before = await _event_count(a)
    r = await a.register(activity_id, body)
    _problem(r, field)
    assert "13911112222" not in r.text and "Zhou" not in r.text
    assert await _event_count(a) == before


@pytest.mark.parametrize("rating", [0, 6, -1, "5", 4.5, True, None])
async def test_out_of_range_ratings_are_422(activities: ActivitiesUnderTest, rating: Any) -> None:
    a = activities
    activity_id = await a.schedule()
    [member] = await a.members(1)
    reg = (await a.register(activity_id, {"member_id": str(member)})).json()
    a.clock.now = MOTHERS_DAY
    try:
        base = f"/v1/activities/{activity_id}/registrations/{reg['registration_id']}"
        assert (await a.http.post(f"{base}/check-in", headers=STAFF)).status_code == 200
        a.clock.now = MOTHERS_DAY + timedelta(hours=4)
        r = await a.http.post(f"{base}/feedback", json={"rating": rating, "comment": "ok"}, headers=STAFF)
        _problem(r, "rating")
    finally:
        from tests.integration.activities.conftest import START

        a.clock.now = START


async def test_member_left_arriving_before_its_member_joined_ends_inactive(
    activities: ActivitiesUnderTest,
) -> None:
    a = activities
    member = uuid.uuid4()
    joined = a.joined(member)
    left = a.left(member, date(2026, 4, 1))
    await a.feed.send(left, left, joined, joined)
    await a.known(member, active=False)
    activity_id = await a.schedule()
    r = await a.register(activity_id, {"member_id": str(member)})
    assert (r.status_code, r.json()["code"]) == (409, "member_not_active"), r.text


async def test_an_unknown_membership_event_type_is_skipped_and_later_versions_still_apply(
    activities: ActivitiesUnderTest,
) -> None:
    a = activities
    member = uuid.uuid4()
    joined = a.joined(member)
    unknown = joined.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "event_type": "MemberNicknamed",
            "aggregate_version": joined.aggregate_version + 1,
            "data": {"member_id": str(member), "nickname": "x"},
        }
    )
    a.feed.versions[str(member)] += 1  # the unknown event took a version
    left = a.left(member, date(2026, 4, 1))
    assert left.aggregate_version == unknown.aggregate_version + 1
    await a.feed.send(joined, unknown, left)
    await a.known(member, active=False)
