"""Mother's Day end to end: membership and activities as real processes, driven through HTTP."""

from __future__ import annotations

import json
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import System
from tests.e2e.processes import ServiceProcess
from tests.identifiers import national_id
from tests.infra import Infra
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.e2e

STAFF = {"Authorization": "Bearer local-staff-token"}


async def test_mothers_day_fills_queues_and_promotes_and_a_leaver_loses_the_place(
    services: System, activities_service: ServiceProcess, infra: Infra
) -> None:
    today = date.today()
    day = today + timedelta(days=14)
    async with (
        httpx.AsyncClient(base_url=services.membership.url, headers=STAFF, timeout=10) as m,
        httpx.AsyncClient(base_url=activities_service.url, headers=STAFF, timeout=10) as a,
    ):
        parent = None
        for name, level in [
            ("北京市总工会", "municipal"),
            ("顺义区总工会", "district"),
            ("石园街道总工会", "street"),
        ]:
            parent = (
                await m.post("/v1/unions", json={"name": name, "level": level, "parent_id": parent})
            ).json()["union_id"]
        body = {"name": "石园街道机关工会", "level": "grassroots", "parent_id": parent}
        union = (await m.post("/v1/unions", json=body)).json()
        members = []
        for n in range(4):
            birth = date(1985, 1, 1) + timedelta(days=n)
            r = await m.post(
                "/v1/members",
                json={
                    "union_id": union["union_id"],
                    "full_name": f"妈妈{n}",
                    "gender": "female",
                    "birth_date": birth.isoformat(),
                    "national_id": national_id(birth, female=True),
                    "phone": f"1391234000{n}",
                },
            )
            assert r.status_code == 201, r.text
            members.append(r.json()["member_id"])
        r = await a.post(
            "/v1/activities",
            json={
                "kind": "parent_child",
                "title": "母亲节亲子活动",
                "starts_at": f"{day}T09:00:00+08:00",
                "ends_at": f"{day}T12:00:00+08:00",
                "venue": "顺义花卉中心",
                "capacity": 2,
                "audience": "member_families",
                "child_age_min": 3,
                "child_age_max": 12,
                "union_id": union["union_id"],
            },
        )
        assert r.status_code == 201, r.text
        activity = r.json()["activity_id"]
        child = [{"birth_date": (day - timedelta(days=7 * 365)).isoformat()}]

        async def register(member: str) -> dict[str, Any] | None:
            r = await a.post(
                f"/v1/activities/{activity}/registrations", json={"member_id": member, "children": child}
            )
            if r.status_code == 409 and r.json()["code"] == "member_not_known":
                return None  # its MemberJoined is still on the way: retry
            assert r.status_code == 201, r.text
            answer: dict[str, Any] = r.json()
            return answer

        answers = [await eventually(lambda member=member: register(member)) for member in members[:3]]
        assert [x["status"] for x in answers] == ["confirmed", "confirmed", "waitlisted"]
        assert answers[2]["waitlist_position"] == 1

        # The first mother leaves her union: her place goes to the first in line.
        r = await m.post(f"/v1/members/{members[0]}/leave", json={"reason": "moved"})
        assert r.status_code == 200, r.text

        async def promoted() -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await a.get(f"/v1/activities/{activity}/registrations")).json()[
                "items"
            ]
            status = {i["member_id"]: i["status"] for i in items}
            return items if status[members[0]] == "cancelled" and status[members[2]] == "confirmed" else None

        await eventually(promoted)
        r = await a.post(
            f"/v1/activities/{activity}/registrations", json={"member_id": members[0], "children": child}
        )
        assert (r.status_code, r.json()["code"]) == (409, "member_not_active")

        # A cancellation promotes nobody when nobody waits; the fourth mother then gets the place.
        r = await a.post(f"/v1/activities/{activity}/registrations/{answers[1]['registration_id']}/cancel")
        assert r.json() == {"status": "cancelled", "promoted_registration_id": None}
        fourth = await eventually(lambda: register(members[3]))
        assert fourth["status"] == "confirmed"

        # Membership shows the registration and the lost place on the member's timeline.
        async def on_timeline() -> list[str] | None:
            items = (await m.get(f"/v1/members/{members[0]}/timeline")).json()["items"]
            found = [i["event_type"] for i in items if i["source"] == "activities"]
            return found if "RegistrationCancelled" in found else None

        assert await eventually(on_timeline) == ["RegistrationConfirmed", "RegistrationCancelled"]

    records = await read_topic(infra.kafka, services.topics["activities"], expect=8)
    published = [json.loads(rec.value) for rec in records]
    assert {e["producer"] for e in published} == {"activities"}
    types = [e["event_type"] for e in published]
    for expected in (
        "ActivityScheduled",
        "RegistrationWaitlisted",
        "RegistrationCancelled",
        "WaitlistPromoted",
    ):
        assert expected in types
