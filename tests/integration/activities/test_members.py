"""The member read model fed by membership.events, and what a departure does to registrations."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from services.activities import tables as t
from shared.tables import events, inbox
from tests.integration.activities.conftest import STAFF, ActivitiesUnderTest
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration


async def count(a: ActivitiesUnderTest, query: sa.Select[Any]) -> int:
    async with a.runtime.engine.connect() as conn:
        return int(await conn.scalar(query) or 0)


async def test_a_member_who_leaves_loses_future_registrations_and_the_waitlist_moves_up(
    activities: ActivitiesUnderTest,
) -> None:
    a = activities
    activity_id = await a.schedule(capacity=1)
    leaver, waiting = await a.members(2)
    held = (await a.register(activity_id, {"member_id": str(leaver)})).json()
    queued = (await a.register(activity_id, {"member_id": str(waiting)})).json()
    assert (held["status"], queued["status"]) == ("confirmed", "waitlisted")

    left = a.left(leaver, date(2026, 4, 25))
    await a.feed.send(left)
    await a.known(leaver, active=False)
    listed = (await a.get(f"/v1/activities/{activity_id}/registrations"))["items"]
    status = {r["registration_id"]: r["status"] for r in listed}
    assert status == {held["registration_id"]: "cancelled", queued["registration_id"]: "confirmed"}

    async with a.runtime.engine.connect() as conn:
        rows = (
            await conn.execute(
                sa.select(events.c.event_type, events.c.data, events.c.causation_id)
                .where(events.c.stream_id == activity_id)
                .order_by(events.c.version)
            )
        ).all()
    assert [r.event_type for r in rows[-2:]] == ["RegistrationCancelled", "WaitlistPromoted"]
    assert rows[-2].data["reason"] == "member_left" and rows[-2].causation_id == left.event_id
    r = await a.register(activity_id, {"member_id": str(leaver)})
    assert (r.status_code, r.json()["code"]) == (409, "member_not_active")

    # Redelivered as it was (same event id) and republished (a new id for the same version): nothing twice.
    republished = left.model_copy(update={"event_id": uuid.uuid4()})
    await a.feed.send(left, republished, a.joined(waiting))
    marker = uuid.uuid4()
    await a.feed.send(a.joined(marker))
    await a.known(marker)  # the consumer got past the redeliveries
    types = [r.event_type for r in rows]
    async with a.runtime.engine.connect() as conn:
        after = list(
            (
                await conn.execute(
                    sa.select(events.c.event_type)
                    .where(events.c.stream_id == activity_id)
                    .order_by(events.c.version)
                )
            ).scalars()
        )
    assert after == types
    listed_again = (await a.get(f"/v1/activities/{activity_id}/registrations"))["items"]
    assert {r["registration_id"]: r["status"] for r in listed_again} == status


async def test_a_redelivered_member_joined_changes_nothing_twice(activities: ActivitiesUnderTest) -> None:
    a = activities
    member = uuid.uuid4()
    joined = a.joined(member)
    await a.feed.send(joined, joined)
    await a.known(member)
    marker = uuid.uuid4()
    await a.feed.send(a.joined(marker))
    await a.known(marker)
    assert await count(a, sa.select(sa.func.count()).select_from(t.known_members)) == 2
    duplicates = sa.select(sa.func.count()).select_from(inbox).where(inbox.c.event_id == joined.event_id)
    assert await count(a, duplicates) == 1


async def test_a_departure_keeps_past_and_attended_registrations(activities: ActivitiesUnderTest) -> None:
    a = activities
    activity_id = await a.schedule(capacity=2)
    member = await a.member()
    rid = (await a.register(activity_id, {"member_id": str(member)})).json()["registration_id"]
    await a.feed.send(a.left(member, date(2026, 5, 11)))  # leaves the day after the activity
    await a.known(member, active=False)
    listed = (await a.get(f"/v1/activities/{activity_id}/registrations"))["items"]
    assert [(r["registration_id"], r["status"]) for r in listed] == [(rid, "confirmed")]


async def test_residents_names_and_phones_never_reach_kafka_the_event_store_or_logs(
    activities: ActivitiesUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    a = activities
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="sqlalchemy.engine")  # every statement, parameters hidden
    activity_id = await a.schedule(audience="residents", kind="lecture", title="Mind-body balance")
    name, phone = "赵小梅 Resident", "139 0000 7777"
    key = f"resident-{uuid.uuid4()}"
    r = await a.register(
        activity_id, {"resident": {"full_name": name, "phone": phone}}, **{"Idempotency-Key": key}
    )
    assert r.status_code == 201 and r.json()["status"] == "confirmed"
    rid = r.json()["registration_id"]
    again = await a.register(activity_id, {"resident": {"full_name": name, "phone": "13900007777"}})
    assert (again.status_code, again.json()["code"]) == (409, "already_registered")  # same phone

    contact = await a.get(f"/v1/activities/{activity_id}/registrations/{rid}/resident")
    assert (
        contact["full_name"] == name and contact["phone"].endswith("7777") and "0000" not in contact["phone"]
    )
    listed = (await a.get(f"/v1/activities/{activity_id}/registrations"))["items"]
    assert listed[0]["resident_ref"].startswith("res_") and listed[0]["member_id"] is None
    integrator = {"Authorization": "Bearer local-integrator-token"}
    denied = await a.http.get(
        f"/v1/activities/{activity_id}/registrations/{rid}/resident", headers=integrator
    )
    assert denied.status_code == 403

    on_kafka = await read_topic(a.runtime.settings.kafka_bootstrap_servers, a.topic, expect=2)
    raw = b"".join(rec.value + b"".join(rec.headers.values()) for rec in on_kafka)
    for secret in (name, phone, "13900007777", "7777"):
        assert secret.encode() not in raw
    async with a.runtime.engine.connect() as conn:
        stored = json.dumps(
            [r.data for r in await conn.execute(sa.select(events.c.data))], ensure_ascii=False
        )
        answers = json.dumps(
            [r.body for r in await conn.execute(sa.text("SELECT body FROM idempotency_keys"))]
        )
    assert name not in stored and "7777" not in stored
    assert len(answers) > 2 and "7777" not in answers and name not in answers
    logged = "\n".join(rec.getMessage() for rec in caplog.records)
    assert "INSERT INTO resident_contacts" in logged  # the statements were logged...
    for secret in (name, phone, "13900007777"):
        assert secret not in logged  # ...never their values


async def test_interested_members_are_notified_when_the_next_one_is_scheduled(
    activities: ActivitiesUnderTest,
) -> None:
    a = activities
    first, second, gone = await a.members(3)
    ids = []
    for member in (first, second, gone):
        r = await a.http.post(
            "/v1/interests", json={"member_id": str(member), "kind": "parent_child"}, headers=STAFF
        )
        assert r.status_code == 201, r.text
        ids.append(r.json()["interest_id"])
    r = await a.http.post(
        "/v1/interests", json={"member_id": str(first), "kind": "parent_child"}, headers=STAFF
    )
    assert (r.status_code, r.json()["code"]) == (409, "interest_already_registered")
    r = await a.http.post(
        "/v1/interests", json={"member_id": str(uuid.uuid4()), "kind": "lecture"}, headers=STAFF
    )
    assert (r.status_code, r.json()["code"]) == (409, "member_not_known")
    await a.feed.send(a.left(gone, date(2026, 4, 21)))
    await a.known(gone, active=False)

    await a.schedule(kind="lecture", title="Not what they wait for")
    r = await a.http.post(
        "/v1/activities",
        json={
            "kind": "parent_child",
            "title": "Mother's Day, again",
            "starts_at": "2027-05-09T09:00:00+08:00",
            "ends_at": "2027-05-09T12:00:00+08:00",
            "venue": "Flower centre",
            "capacity": 30,
            "audience": "member_families",
            "child_age_min": 3,
            "child_age_max": 12,
        },
        headers=STAFF,
    )
    assert r.status_code == 201 and r.json()["notified_interest_ids"] == ids[:2]
    activity_id = r.json()["activity_id"]

    async def published() -> list[dict[str, Any]]:
        records = await read_topic(a.runtime.settings.kafka_bootstrap_servers, a.topic, expect=1, timeout=5)
        envelopes = [json.loads(rec.value) for rec in records]
        return [e for e in envelopes if e["event_type"] == "InterestedMembersNotified"]

    [notified] = await eventually(published)
    assert notified["aggregate_id"] == activity_id
    assert notified["data"]["interest_ids"] == ids[:2]
    assert notified["data"]["member_ids"] == [str(first), str(second)]
    # Each interest is told once: the next one of the kind notifies nobody.
    again = await a.schedule(starts_at="2027-06-01T09:00:00+08:00", ends_at="2027-06-01T10:00:00+08:00")
    assert (await a.get(f"/v1/activities/{again}"))["title"]
    stats = await a.get("/v1/statistics/participation?by=year")
    assert stats["by"] == "year"
