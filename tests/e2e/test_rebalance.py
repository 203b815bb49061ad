"""A second claims process joins the group mid-stream and is SIGKILLed: no report loses a claim,
none gets one twice (offsets are never committed past work that did not commit)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import defaultdict
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import System
from tests.identifiers import identity, luhn_complete
from tests.infra import Infra
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.e2e

STAFF = {"Authorization": "Bearer local-staff-token"}
SUPERVISOR = {"Authorization": "Bearer local-supervisor-token"}
MEMBERS = 20
REPORTS_PER_MEMBER = 3


async def _member(m: httpx.AsyncClient, union_id: str, i: int, today: date) -> str:
    birth, nid = identity(i, female=i % 2 == 1)
    r = await m.post(
        "/v1/members",
        json={
            "union_id": union_id,
            "full_name": f"Member {i}",
            "gender": "female" if i % 2 else "male",
            "birth_date": birth.isoformat(),
            "national_id": nid,
            "joined_on": (today - timedelta(days=900)).isoformat(),
        },
    )
    assert r.status_code == 201, r.text
    member_id: str = r.json()["member_id"]
    card = {
        "card_number": luhn_complete(f"6210300{i:08d}"),
        "issued_on": (today - timedelta(days=400)).isoformat(),
    }
    assert (await m.post(f"/v1/members/{member_id}/card", json=card)).status_code == 201
    enrol = {
        "plan_code": "accident_injury",
        "shares": 1,
        "starts_on": (today - timedelta(days=90)).isoformat(),
        # Cover from before today is a paper enrolment, recorded by a supervisor.
        "paper": {
            "receipt_reference": f"E2E-{uuid.uuid4().hex[:12]}",
            "paid_on": (today - timedelta(days=90)).isoformat(),
        },
    }
    r = await m.post(f"/v1/members/{member_id}/enrollments", json=enrol, headers=SUPERVISOR)
    assert r.status_code == 201, r.text
    return member_id


async def test_a_second_claims_process_joins_and_is_killed_mid_stream(services: System, infra: Infra) -> None:
    today = date.today()
    async with (
        httpx.AsyncClient(base_url=services.membership.url, headers=STAFF, timeout=30) as m,
        httpx.AsyncClient(base_url=services.claims.url, headers=STAFF, timeout=30) as c,
    ):
        union_id = None
        for level in ("municipal", "district", "street", "grassroots"):
            r = await m.post("/v1/unions", json={"name": level, "level": level, "parent_id": union_id})
            union_id = r.json()["union_id"]
        assert union_id is not None
        members = [await _member(m, union_id, i, today) for i in range(MEMBERS)]

        second = services.claims_replica()
        reports: list[str] = []

        async def report(member_id: str, n: int) -> None:
            r = await m.post(
                f"/v1/members/{member_id}/injury-reports",
                json={
                    "occurred_on": (today - timedelta(days=1 + n)).isoformat(),
                    "work_related": False,
                    "description": "fell",
                    "diagnosis": "sprain",
                },
            )
            assert r.status_code == 202, r.text
            reports.append(r.json()["report_id"])

        jobs = [(member, n) for n in range(REPORTS_PER_MEMBER) for member in members]
        third = len(jobs) // 3
        for member, n in jobs[:third]:
            await report(member, n)
        await asyncio.to_thread(second.start)  # joins the group: partitions are handed over
        for member, n in jobs[third : 2 * third]:
            await report(member, n)
            await asyncio.sleep(0.02)
        assert second.proc is not None
        second.proc.kill()  # SIGKILL mid-stream: no shutdown, no offset commit, no goodbye
        second.proc.wait()
        for member, n in jobs[2 * third :]:
            await report(member, n)

        async def all_decided() -> bool:
            for report_id in reports:
                items = (await c.get("/v1/claims", params={"report_id": report_id})).json()["items"]
                if len(items) < 2:
                    return False
            return True

        await eventually(all_decided, timeout=120, interval=0.5)
        per_report: dict[str, list[dict[str, Any]]] = {}
        for report_id in reports:
            per_report[report_id] = (await c.get("/v1/claims", params={"report_id": report_id})).json()[
                "items"
            ]

    assert len(reports) == MEMBERS * REPORTS_PER_MEMBER
    for report_id, items in per_report.items():
        assert sorted(i["benefit"] for i in items) == ["card", "paid"], (report_id, items)

    published = await read_topic(infra.kafka, services.topics["claims"], expect=2 * len(reports), timeout=60)
    event_ids_per_claim: dict[str, set[str]] = defaultdict(set)
    for record in published:
        envelope = json.loads(record.value)
        if envelope["event_type"] == "ClaimFiled":
            event_ids_per_claim[envelope["data"]["claim_id"]].add(envelope["event_id"])
    assert len(event_ids_per_claim) == 2 * len(reports), "every claim filed on Kafka"
    assert all(len(ids) == 1 for ids in event_ids_per_claim.values()), "no claim filed twice"
