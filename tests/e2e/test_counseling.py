"""The heart station end to end: membership and counseling as real processes. A member joins
(membership), is known to counseling through membership.events, books a free session; a resident
books another; both sessions are completed with notes; only the assigned counsellor and the
supervisor read them, and no topic and no process log holds the notes, a name or a phone."""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from typing import Any

import httpx
import pytest

from shared.clock import BEIJING, beijing_today
from tests.e2e.conftest import System
from tests.e2e.processes import ServiceProcess
from tests.identifiers import national_id
from tests.infra import Infra
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.e2e

STAFF = {"Authorization": "Bearer local-staff-token"}
COUNSELOR = {"Authorization": "Bearer local-counselor-token"}
SUPERVISOR = {"Authorization": "Bearer local-supervisor-token"}
MEMBER_NAME, MEMBER_PHONE = "Han Meimei", "13600001111"
RESIDENT_NAME, RESIDENT_PHONE = "Lu Dawei", "13600002222"
NOTES = "Sleeps four hours a night since the night shifts began; sleep diary agreed."


async def test_a_member_and_a_resident_are_counselled_and_nothing_leaks(
    services: System, counseling_process: ServiceProcess, infra: Infra
) -> None:
    today = beijing_today()
    async with (
        httpx.AsyncClient(base_url=services.membership.url, headers=STAFF, timeout=10) as m,
        httpx.AsyncClient(base_url=counseling_process.url, timeout=10) as k,
    ):

        async def ok(
            client: httpx.AsyncClient, path: str, body: Any, headers: Any = STAFF, status: int = 201
        ) -> Any:
            r = await client.post(path, json=body, headers=headers)
            assert r.status_code == status, r.text
            return r.json()

        union = None
        for level in ("municipal", "district", "street", "grassroots"):
            body = {"name": f"Heart station test {level}", "level": level, "parent_id": union}
            union = (await ok(m, "/v1/unions", body))["union_id"]
        member = await ok(
            m,
            "/v1/members",
            {
                "union_id": union,
                "full_name": MEMBER_NAME,
                "gender": "female",
                "birth_date": "1990-06-01",
                "national_id": national_id(date(1990, 6, 1), female=True),
                "phone": MEMBER_PHONE,
            },
        )
        counselor = (
            await ok(
                k, "/v1/counselors", {"display_name": "Wang", "provider": "partner", "subject": "counselor-1"}
            )
        )["counselor_id"]
        slots = []
        for hour in (0, 1):  # earlier today (Beijing): the sessions can be completed right away
            start = datetime.combine(today, time(hour, 5), BEIJING)
            body = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(minutes=50)).isoformat()}
            slots.append((await ok(k, f"/v1/counselors/{counselor}/slots", body, COUNSELOR))["slot_id"])

        async def member_booked() -> Any:
            r = await k.post(
                "/v1/appointments",
                json={"slot_id": slots[0], "member_id": member["member_id"]},
                headers=STAFF,
            )
            if r.status_code == 409 and r.json()["code"] == "member_not_known":
                return None  # membership.events has not reached counseling yet
            assert r.status_code == 201, r.text
            return r.json()

        first = await eventually(member_booked)
        resident = {"full_name": RESIDENT_NAME, "phone": RESIDENT_PHONE}
        second = await ok(k, "/v1/appointments", {"slot_id": slots[1], "resident": resident})
        for appointment in (first, second):
            await ok(
                k,
                f"/v1/appointments/{appointment['appointment_id']}/complete",
                {"notes": NOTES},
                COUNSELOR,
                200,
            )

        url = f"/v1/appointments/{first['appointment_id']}/notes"
        assert (await k.get(url, headers=STAFF)).status_code == 403
        assert (await k.get(url, headers=COUNSELOR)).json()["notes"] == NOTES
        assert (await k.get(url, headers=SUPERVISOR)).json()["notes"] == NOTES
        audit = (
            await k.get(f"/v1/audit?appointment_id={first['appointment_id']}", headers=SUPERVISOR)
        ).json()
        assert [(i["role"], i["allowed"]) for i in audit["items"]] == [
            ("staff", False),
            ("counselor", True),
            ("supervisor", True),
        ]
        stats = (await k.get("/v1/statistics", headers=STAFF)).json()
        assert stats["sessions"] == 2 and stats["clients"] == {
            "members": 1,
            "residents": 1,
            "resident_share": 0.5,
        }

    counseling_topic = counseling_process.extra_env["COUNSELING_TOPIC"]
    on_counseling = b"\n".join(r.value for r in await read_topic(infra.kafka, counseling_topic, expect=7))
    assert b"AppointmentCompleted" in on_counseling
    assert member["member_id"].encode() not in on_counseling and MEMBER_NAME.encode() not in on_counseling
    everything = on_counseling
    for topic in services.topics.values():
        everything += b"".join(r.value for r in await read_topic(infra.kafka, topic, expect=1, timeout=5))
    logs = "".join(p.log.read_text() for p in (services.membership, services.claims, counseling_process))
    for secret in (NOTES, "sleep diary", RESIDENT_NAME, RESIDENT_PHONE, MEMBER_PHONE):
        assert secret.encode() not in everything, secret
        assert secret not in logs, secret
