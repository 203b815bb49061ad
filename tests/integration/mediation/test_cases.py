"""The mediation service on the real PostgreSQL and Kafka: intake, deadlines at their Beijing-date
boundaries, the room under concurrency, escalation up the tiers, confidential minutes, redelivery."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date

import pytest
import sqlalchemy as sa

from services.mediation.tables import case_parties, minutes, unions
from shared.audit import access_audit
from shared.tables import inbox
from tests.integration.mediation.conftest import Mediation
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration


async def test_a_case_is_received_with_its_number_and_both_deadlines(mediation: Mediation) -> None:
    station = mediation.tree.other_street
    put = await mediation.http.put(
        f"/v1/stations/{station}",
        json={"case_prefix": "GM"},
        headers={"Authorization": f"Bearer staff-{'x' * 8}"},
    )
    assert put.status_code == 200, put.text
    # Received on 16 Sep 2026: day 15 is 1 Oct (National Day), so mediation ends on 8 Oct; learned on
    # 1 Oct 2025: one year later is 1 Oct 2026, a holiday too: the limit is 8 Oct 2026.
    first = await mediation.new_case(union_id=station, learned_on="2025-10-01", received_on="2026-09-16")
    assert first["case_number"] == "GM-2026-0001"
    assert first["mediation_deadline"] == "2026-10-08"
    assert first["arbitration_limit"] == "2026-10-08"
    second = await mediation.new_case(union_id=station, received_on="2026-09-15", learned_on="2026-09-01")
    assert second["case_number"] == "GM-2026-0002"
    assert second["mediation_deadline"] == "2026-09-30"  # 15 Sep + 15 = 30 Sep, a Wednesday
    got = await mediation.get(f"/cases/{first['case_id']}")
    assert got.status_code == 200
    case = got.json()
    assert (case["status"], case["tier"], case["handling_union_id"]) == ("open", "street", str(station))
    assert case["worker"] == {"full_name": "李建国", "phone": "13911112222"}
    assert [h["event_type"] for h in case["history"]] == ["CaseReceived"]
    assert {d["period"] for d in case["deadlines"]} == {"mediation", "arbitration_limit"}
    assert all("art." in d["source"] for d in case["deadlines"])
    # Integrators see the case, never the parties.
    seen = (await mediation.get(f"/cases/{first['case_id']}", "integrator")).json()
    assert "worker" not in seen and "claim_text" not in seen


async def test_received_on_defaults_to_the_beijing_date_of_the_clock(mediation: Mediation) -> None:
    mediation.clock.today = date(2026, 9, 17)
    try:
        answer = await mediation.new_case(learned_on="2026-09-01")
    finally:
        mediation.clock.today = date(2026, 9, 16)
    case = (await mediation.get(f"/cases/{answer['case_id']}")).json()
    assert case["received_on"] == "2026-09-17"
    assert answer["mediation_deadline"] == "2026-10-08"  # 17 Sep + 15 = 2 Oct, a holiday


async def test_intake_refusals_have_codes(mediation: Mediation) -> None:
    base = {
        "worker": {"full_name": "张三"},
        "employer": {"name": "某公司"},
        "category": "overtime",
        "claim_text": "加班费",
        "learned_on": "2026-09-01",
    }
    unknown = await mediation.post("/cases", {**base, "union_id": str(uuid.uuid4())})
    assert (unknown.status_code, unknown.json()["code"]) == (409, "union_not_known")
    district = await mediation.post("/cases", {**base, "union_id": str(mediation.tree.district)})
    assert (district.status_code, district.json()["code"]) == (422, "not_a_station")
    member = uuid.uuid4()
    no_member = {**base, "union_id": str(mediation.tree.street), "member_id": str(member)}
    del no_member["worker"]
    missing = await mediation.post("/cases", no_member)
    assert (missing.status_code, missing.json()["code"]) == (409, "member_not_known")
    both = await mediation.post("/cases", {**no_member, "worker": {"full_name": "x"}})
    assert both.status_code == 422
    other = await mediation.post("/cases", {**base, "union_id": str(mediation.tree.street)}, "other-street")
    assert (other.status_code, other.json()["code"]) == (403, "not_your_station")
    bad_date = await mediation.post(
        "/cases", {**base, "union_id": str(mediation.tree.street), "learned_on": "2026-9-1"}
    )
    assert bad_date.status_code == 422 and bad_date.json()["errors"][0]["field"] == "learned_on"
    # Once the member's MemberJoined arrives, the case is received.
    await mediation.feed.send(mediation.feed.member(member, mediation.tree.grassroots))

    async def accepted() -> bool:
        return (await mediation.post("/cases", no_member)).status_code == 201

    await eventually(accepted, timeout=30)
    listed = (await mediation.get(f"/cases?member_id={member}")).json()["items"]
    assert len(listed) == 1


async def test_idempotency_key_receives_one_case(mediation: Mediation) -> None:
    body = {
        "union_id": str(mediation.tree.street),
        "worker": {"full_name": "赵六", "phone": "13800001111"},
        "employer": {"name": "某公司"},
        "category": "contract",
        "claim_text": "未签劳动合同",
        "learned_on": "2026-09-01",
    }
    key = str(uuid.uuid4())
    answers = await asyncio.gather(
        *(mediation.post("/cases", body, **{"Idempotency-Key": key}) for _ in range(3))
    )
    assert {a.status_code for a in answers} == {201}
    assert len({a.json()["case_id"] for a in answers}) == 1
    case_id = answers[0].json()["case_id"]
    withdrawn = await mediation.post(f"/cases/{case_id}/withdraw", None)
    assert withdrawn.status_code == 200 and withdrawn.json()["status"] == "withdrawn"
    again = await mediation.post(f"/cases/{case_id}/withdraw", {"reason": "again"})
    assert (again.status_code, again.json()["code"]) == (409, "case_closed")


async def test_the_sweep_flags_a_case_the_day_after_its_deadline_once(mediation: Mediation) -> None:
    case = await mediation.new_case(received_on="2026-09-16", learned_on="2026-09-10")
    assert case["mediation_deadline"] == "2026-10-08"
    on_the_day = (await mediation.sweep_on("2026-10-08")).json()
    assert case["case_id"] not in on_the_day["overdue"]
    after = (await mediation.sweep_on("2026-10-09")).json()
    assert case["case_id"] in after["overdue"]
    again = (await mediation.sweep_on("2026-10-09")).json()
    assert case["case_id"] in again["overdue"] and again["events_emitted"] == 0
    passed = [
        e
        for e in await mediation.stored_events("MediationDeadlinePassed")
        if e["stream_id"] == case["case_id"]
    ]
    assert len(passed) == 1 and passed[0]["data"]["mediation_deadline"] == "2026-10-08"
    summary = (await mediation.get(f"/cases/{case['case_id']}")).json()
    assert summary["may_apply_for_arbitration"] is False  # today (16 Sep) it is not overdue yet


async def test_the_sweep_flags_a_near_arbitration_limit(mediation: Mediation) -> None:
    # Learned 2025-10-20: the limit is 2026-10-20 (Tue). 30 days before is 2026-09-20.
    case = await mediation.new_case(received_on="2026-09-16", learned_on="2025-10-20")
    assert case["arbitration_limit"] == "2026-10-20"
    early = (await mediation.sweep_on("2026-09-19")).json()
    assert case["case_id"] not in early["limit_near"]
    near = (await mediation.sweep_on("2026-09-20")).json()
    assert case["case_id"] in near["limit_near"]
    flagged = [
        e for e in await mediation.stored_events("ArbitrationLimitNear") if e["stream_id"] == case["case_id"]
    ]
    assert len(flagged) == 1 and flagged[0]["data"]["days_left"] == 30


async def test_overlapping_sessions_in_one_room_under_concurrency_book_exactly_one(
    mediation: Mediation,
) -> None:
    cases = [await mediation.new_case() for _ in range(6)]
    day = "2026-09-21"
    bodies = [
        {
            "starts_at": f"{day}T09:{10 * i:02d}:00+08:00",
            "ends_at": f"{day}T11:00:00+08:00",
            "mediator": "mediator-1",
        }
        for i in range(6)
    ]
    answers = await asyncio.gather(
        *(mediation.post(f"/cases/{c['case_id']}/sessions", b) for c, b in zip(cases, bodies, strict=True))
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [201, 409, 409, 409, 409, 409], [a.text for a in answers]
    assert {a.json().get("code") for a in answers if a.status_code == 409} <= {
        "room_taken",
        "concurrent_update",
    }
    booked = await mediation.stored_events("RoomBooked")
    assert len([e for e in booked if e["data"]["starts_at"].startswith(day)]) == 1
    # Back to back is free; and another station's room is another room.
    after = await mediation.post(
        f"/cases/{cases[1]['case_id']}/sessions",
        {"starts_at": f"{day}T11:00:00+08:00", "ends_at": f"{day}T12:00:00+08:00", "mediator": "mediator-1"},
    )
    assert after.status_code == 201, after.text
    elsewhere = await mediation.new_case(union_id=mediation.tree.other_street)
    other_room = await mediation.post(
        f"/cases/{elsewhere['case_id']}/sessions",
        {"starts_at": f"{day}T09:00:00+08:00", "ends_at": f"{day}T10:00:00+08:00", "mediator": "mediator-1"},
    )
    assert other_room.status_code == 201
    # 01:30Z is 09:30 in Beijing: the same instant, spelt in UTC, is still taken.
    utc = await mediation.post(
        f"/cases/{cases[2]['case_id']}/sessions",
        {"starts_at": f"{day}T01:30:00Z", "ends_at": f"{day}T01:45:00Z", "mediator": "mediator-1"},
    )
    assert (utc.status_code, utc.json()["code"]) == (409, "room_taken")


async def test_an_escalation_reaches_the_district_queue_and_the_street_sees_the_outcome(
    mediation: Mediation,
) -> None:
    tree = mediation.tree
    case = await mediation.new_case(who="street")
    case_id = case["case_id"]
    street_queue = (await mediation.get(f"/queues/{tree.street}", "street")).json()["items"]
    assert case_id in {i["case_id"] for i in street_queue}
    # The district cannot act on the street's case, nor see it, before it is escalated to it.
    assert (await mediation.get(f"/cases/{case_id}", "district")).status_code == 404
    refused = await mediation.post(f"/cases/{case_id}/employer-refused", {"reason": "公司拒绝到场"}, "street")
    assert refused.status_code == 200
    up = await mediation.post(f"/cases/{case_id}/escalate", {"reason": "街道调解未果"}, "street")
    assert up.status_code == 200, up.text
    assert (up.json()["tier"], up.json()["handling_union_id"], up.json()["status"]) == (
        "district",
        str(tree.district),
        "escalated",
    )
    district_queue = (await mediation.get(f"/queues/{tree.district}", "district")).json()["items"]
    assert next(i for i in district_queue if i["case_id"] == case_id)["tier"] == "district"
    assert case_id not in {
        i["case_id"] for i in (await mediation.get(f"/queues/{tree.street}", "street")).json()["items"]
    }
    # The district sees the whole history; the street can no longer act on it.
    seen = (await mediation.get(f"/cases/{case_id}", "district")).json()
    assert [h["event_type"] for h in seen["history"]] == ["CaseReceived", "EmployerRefused", "CaseEscalated"]
    assert seen["history"][2]["texts"] == {"reason": "街道调解未果"}
    late = await mediation.post(
        f"/cases/{case_id}/agreement", {"terms": "x", "amount": "1", "due_on": "2026-10-30"}, "street"
    )
    assert (late.status_code, late.json()["code"]) == (403, "not_handling_union")
    assert (await mediation.get(f"/queues/{tree.district}", "street")).status_code == 403
    agreed = await mediation.post(
        f"/cases/{case_id}/agreement",
        {"terms": "公司分两期支付工资", "amount": "7000.00", "due_on": "2026-10-30"},
        "district",
    )
    assert agreed.status_code == 200 and agreed.json()["status"] == "agreed"
    paid = await mediation.post(
        f"/cases/{case_id}/agreement/fulfilment", {"amount_paid": "7000.00"}, "district"
    )
    assert paid.status_code == 200
    # The street sees what became of it.
    outcome = (await mediation.get(f"/cases/{case_id}", "street")).json()
    assert outcome["status"] == "agreed" and outcome["tier"] == "district"
    assert outcome["outcome"]["agreed_amount"] == "7000.00" and outcome["outcome"]["amount_paid"] == "7000.00"
    listed = (await mediation.get(f"/cases?station_id={tree.street}&status=agreed", "street")).json()["items"]
    assert case_id in {i["case_id"] for i in listed}
    # Up to the municipal tier, and no further.
    other = await mediation.new_case(who="street")
    assert (
        await mediation.post(f"/cases/{other['case_id']}/escalate", {"reason": "a"}, "street")
    ).status_code == 200
    top = await mediation.post(f"/cases/{other['case_id']}/escalate", {"reason": "b"}, "district")
    assert top.json()["tier"] == "municipal"
    beyond = await mediation.post(f"/cases/{other['case_id']}/escalate", {"reason": "c"}, "staff")
    assert (beyond.status_code, beyond.json()["code"]) == (409, "no_higher_tier")
    referred = await mediation.post(f"/cases/{other['case_id']}/refer", {"to": "arbitration"}, "staff")
    assert referred.json()["status"] == "referred_to_arbitration"
    # Statistics per station and tier.
    stats = (await mediation.get("/statistics/cases?year=2026")).json()
    district = next(t for t in stats["tiers"] if t["tier"] == "district")
    assert district["agreed"] >= 1 and district["amount_recovered"] != "0.00"
    station = next(s for s in stats["stations"] if s["union_id"] == str(tree.street))
    assert station["by_category"]["wages"] >= 2 and station["median_days_to_agreement"] is not None


async def test_minutes_are_confidential_audited_and_never_leave_the_service(mediation: Mediation) -> None:
    secret = f"会谈纪要 工人说老板拖欠工资 {uuid.uuid4().hex}"
    worker_phone = f"139{uuid.uuid4().int % 10**8:08d}"
    case = await mediation.new_case(worker={"full_name": "钱七", "phone": worker_phone}, who="street")
    session = await mediation.post(
        f"/cases/{case['case_id']}/sessions",
        {
            "starts_at": "2026-09-22T14:00:00+08:00",
            "ends_at": "2026-09-22T15:00:00+08:00",
            "mediator": "mediator-1",
            "parties_present": ["worker", "employer"],
        },
        "street",
    )
    assert session.status_code == 201, session.text
    session_id = session.json()["session_id"]
    path = f"/cases/{case['case_id']}/sessions/{session_id}/minutes"
    wrong = await mediation.post(path, {"minutes": secret}, "mediator-2")
    assert (wrong.status_code, wrong.json()["code"]) == (403, "not_the_mediator")
    kept = await mediation.post(path, {"minutes": secret}, "mediator-1")
    assert kept.status_code == 201, kept.text
    assert (await mediation.get(path, "mediator-1")).json()["minutes"] == secret
    assert (await mediation.get(path, "supervisor")).json()["minutes"] == secret
    refused = await mediation.get(path, "mediator-2")
    assert refused.status_code == 403 and secret not in refused.text
    assert (await mediation.get(path, "integrator")).status_code == 403
    trail = (await mediation.get(f"/audit?session_id={session_id}", "supervisor")).json()["items"]
    assert [(e["subject"].split(":")[0], e["allowed"]) for e in trail] == [
        ("mediator-1", True),
        ("supervisor", True),
        ("mediator-2", False),
        ("integrator", False),  # refused by role, and still on record
    ]
    assert (await mediation.get(f"/audit?session_id={session_id}", "staff")).status_code == 403
    async with mediation.runtime.engine.connect() as conn:
        stored = await conn.scalar(
            sa.select(minutes.c.ciphertext).where(minutes.c.session_id == uuid.UUID(session_id))
        )
        phone_at_rest = await conn.scalar(
            sa.select(case_parties.c.worker_phone).where(case_parties.c.case_id == uuid.UUID(case["case_id"]))
        )
        event_text = json.dumps([e["data"] for e in await mediation.stored_events()], ensure_ascii=False)
        with pytest.raises(sa.exc.DBAPIError):
            await conn.execute(sa.delete(access_audit))
    assert stored and stored.startswith("local:") and secret not in stored
    assert phone_at_rest and worker_phone not in phone_at_rest
    for text in (secret, worker_phone, "钱七", "顺义某物流有限公司", "三个月工资未发"):
        assert text not in event_text
    published = await mediation.published()
    raw = b"".join(m.value + b"".join(m.headers.values()) for m in published)
    assert any(m.key == case["case_id"].encode() for m in published)
    for text in (secret, worker_phone, "钱七", "三个月工资未发"):
        assert text.encode() not in raw
    assert not [line for line in mediation.logs if secret in line or worker_phone in line]


async def test_a_redelivered_membership_event_changes_nothing_twice(mediation: Mediation) -> None:
    union_id = uuid.uuid4()
    envelope = mediation.feed.union(union_id, "street", mediation.tree.district, "Redelivered Street")
    await mediation.feed.send(envelope)

    async def known() -> bool:
        return (await mediation.get(f"/stations/{union_id}")).status_code == 200

    await eventually(known, timeout=30)
    await mediation.feed.send(envelope, envelope)
    marker = uuid.uuid4()
    await mediation.feed.send(mediation.feed.union(marker, "street", mediation.tree.district, "Marker"))

    async def marker_known() -> bool:
        return (await mediation.get(f"/stations/{marker}")).status_code == 200

    await eventually(marker_known, timeout=30)
    async with mediation.runtime.engine.connect() as conn:
        rows = await conn.scalar(
            sa.select(sa.func.count()).select_from(unions).where(unions.c.union_id == union_id)
        )
        seen = await conn.scalar(
            sa.select(sa.func.count()).select_from(inbox).where(inbox.c.event_id == envelope.event_id)
        )
    assert rows == 1 and seen == 1
