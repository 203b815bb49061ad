"""The seed story, end to end: membership and claims as real processes, driven only through HTTP,
observed through HTTP and a plain Kafka consumer."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from typing import Any

import httpx
import pytest

from tests.e2e.conftest import System
from tests.infra import Infra
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.e2e

STAFF = {"Authorization": "Bearer local-staff-token"}
SUPERVISOR = {"Authorization": "Bearer local-supervisor-token"}
NATIONAL_ID = "110113198003041238"
PHONE = "13912345678"
CARD = "6210300012375678"


async def test_injury_opens_both_claims_one_is_documented_approved_and_paid(
    services: System, infra: Infra
) -> None:
    membership, claims, topics = services.membership, services.claims, services.topics
    today = date.today()
    async with (
        httpx.AsyncClient(base_url=membership.url, headers=STAFF, timeout=10) as m,
        httpx.AsyncClient(base_url=claims.url, headers=STAFF, timeout=10) as c,
    ):

        async def created(
            path: str, body: dict[str, Any], status: int = 201, headers: dict[str, str] | None = None
        ) -> dict[str, Any]:
            r = await m.post(path, json=body, headers=headers)
            assert r.status_code == status, r.text
            answer: dict[str, Any] = r.json()
            return answer

        parent = None
        for name, level in [
            ("北京市总工会", "municipal"),
            ("顺义区总工会", "district"),
            ("石园街道总工会", "street"),
            ("五里仓第二社区联合工会", "grassroots"),
        ]:
            parent = (await created("/v1/unions", {"name": name, "level": level, "parent_id": parent}))[
                "union_id"
            ]
        member_id = (
            await created(
                "/v1/members",
                {
                    "union_id": parent,
                    "full_name": "王师傅",
                    "gender": "male",
                    "birth_date": "1980-03-04",
                    "national_id": NATIONAL_ID,
                    "phone": PHONE,
                    "joined_on": (today - timedelta(days=800)).isoformat(),
                },
            )
        )["member_id"]
        card = await created(
            f"/v1/members/{member_id}/card",
            {"card_number": CARD, "issued_on": (today - timedelta(days=400)).isoformat()},
        )
        assert card["card_last4"] == "5678"
        enrolment = await created(
            f"/v1/members/{member_id}/enrollments",
            {
                "plan_code": "accident_injury",
                "shares": 1,
                "starts_on": (today - timedelta(days=60)).isoformat(),
                # Cover from before today is a paper enrolment, recorded by a supervisor.
                "paper": {
                    "receipt_reference": f"E2E-{uuid.uuid4().hex[:12]}",
                    "paid_on": (today - timedelta(days=60)).isoformat(),
                },
            },
            headers=SUPERVISOR,
        )
        report_id = (
            await created(
                f"/v1/members/{member_id}/injury-reports",
                {
                    "occurred_on": (today - timedelta(days=1)).isoformat(),
                    "work_related": False,
                    "description": "hurt his hand",
                    "diagnosis": "contusion of the right hand",
                    "hospital": "顺义区医院",
                },
                status=202,
            )
        )["report_id"]

        async def both_claims() -> list[dict[str, Any]] | None:
            r = await c.get("/v1/claims", params={"report_id": report_id})
            items: list[dict[str, Any]] = r.json()["items"]
            return items if len(items) == 2 else None

        opened = {x["plan_code"]: x for x in await eventually(both_claims, timeout=60)}
        assert set(opened) == {"accident_injury", "card_non_work_accident"}
        assert opened["accident_injury"]["enrollment_id"] == enrolment["enrollment_id"]
        assert (
            opened["accident_injury"]["required_documents"]
            == opened["card_non_work_accident"]["required_documents"]
        )

        card_claim = opened["card_non_work_accident"]["claim_id"]
        r = await c.post(
            f"/v1/claims/{card_claim}/documents",
            json={"documents": opened["card_non_work_accident"]["required_documents"]},
        )
        assert r.status_code == 200 and r.json()["status"] == "documents_complete"
        assert (
            await c.post(f"/v1/claims/{card_claim}/approve", json={"amount": "2000.00"})
        ).status_code == 200
        paid = await c.post(f"/v1/claims/{card_claim}/pay")
        assert paid.status_code == 200 and paid.json()["status"] == "paid"

        member = (await m.get(f"/v1/members/{member_id}")).json()
        assert NATIONAL_ID not in json.dumps(member) and PHONE not in json.dumps(member)

    claim_events = await read_topic(infra.kafka, topics["claims"], expect=5, timeout=30)
    types = [e.headers["event_type"].decode() for e in claim_events]
    assert types.count("ClaimFiled") == 2 and types.count("ClaimPaid") == 1
    membership_events = await read_topic(infra.kafka, topics["membership"], expect=9, timeout=30)
    raw = b"".join(e.value for e in membership_events)
    assert NATIONAL_ID.encode() not in raw and PHONE.encode() not in raw and CARD.encode() not in raw
    assert b"InjuryReported" in raw and b"contusion" not in raw, "health details stay off Kafka"
