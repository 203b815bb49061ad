"""Claim lifecycle through the claims HTTP API: valid moves, refused moves, bad input, auth."""

from __future__ import annotations

import asyncio
import uuid
from datetime import date, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from services.claims.tables import coverage_enrollments
from tests.integration.claims.conftest import STAFF, TODAY, ClaimsUnderTest
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration

AUG_2 = date(2016, 8, 2)


async def opened_claims(c: ClaimsUnderTest) -> dict[str, dict[str, Any]]:
    """The seed case: returns {plan_code: claim} once both claims are open."""
    f, member = c.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, date(2016, 1, 1), date(2016, 12, 31)))
    report = f.injury(member, AUG_2)
    await f.send(report)

    async def both() -> dict[str, dict[str, Any]] | None:
        r = await c.http.get("/v1/claims", params={"report_id": report.aggregate_id}, headers=STAFF)
        items = r.json()["items"]
        return {i["plan_code"]: i for i in items} if len(items) == 2 else None

    result: dict[str, dict[str, Any]] = await eventually(both)
    return result


async def post(c: ClaimsUnderTest, path: str, body: dict[str, Any] | None = None, **headers: str) -> Any:
    return await c.http.post(path, json=body or {}, headers={**STAFF, **headers})


async def test_documents_approve_pay_and_the_events_on_kafka(claims: ClaimsUnderTest) -> None:
    card = (await opened_claims(claims))["card_non_work_accident"]
    cid = card["claim_id"]
    r = await post(claims, f"/v1/claims/{cid}/documents", {"documents": ["id_copy", "card_copy"]})
    assert r.status_code == 200 and r.json()["status"] == "documents_partial"
    assert r.json()["missing_documents"] == ["union_incident_certificate", "diagnosis_and_hospital_records"]

    early = await post(claims, f"/v1/claims/{cid}/approve", {"amount": "100"})
    assert early.status_code == 409 and "still missing" in early.json()["detail"]

    r = await post(
        claims,
        f"/v1/claims/{cid}/documents",
        {"documents": ["union_incident_certificate", "diagnosis_and_hospital_records"]},
    )
    assert r.json()["status"] == "documents_complete" and r.json()["missing_documents"] == []

    above = await post(claims, f"/v1/claims/{cid}/approve", {"amount": "20000.01"})
    assert above.status_code == 409
    assert above.headers["content-type"] == "application/problem+json"
    assert "exceeds the limit of 20000" in above.json()["detail"]

    ok = await post(claims, f"/v1/claims/{cid}/approve", {"amount": "3000.00"})
    assert ok.status_code == 200 and ok.json()["approved_amount"] == "3000.00"
    paid = await post(claims, f"/v1/claims/{cid}/pay")
    assert (
        paid.status_code == 200
        and paid.json()["status"] == "paid"
        and paid.json()["paid_amount"] == "3000.00"
    )

    again = await post(claims, f"/v1/claims/{cid}/pay")
    assert again.status_code == 409

    detail = (await claims.http.get(f"/v1/claims/{cid}", headers=STAFF)).json()
    assert [h["event_type"] for h in detail["history"]] == [
        "ClaimFiled",
        "ClaimDocumentsReceived",
        "ClaimDocumentsReceived",
        "ClaimApproved",
        "ClaimPaid",
    ]

    types = [
        r.headers["event_type"]
        for r in await read_topic(claims.settings.kafka_bootstrap_servers, claims.claims_topic, expect=6)
    ]
    assert types.count(b"ClaimPaid") == 1 and types.count(b"ClaimApproved") == 1


async def test_paying_a_rejected_claim_is_409_and_changes_nothing(claims: ClaimsUnderTest) -> None:
    paid_claim = (await opened_claims(claims))["accident_injury"]
    cid = paid_claim["claim_id"]
    r = await post(claims, f"/v1/claims/{cid}/reject", {"reason_code": "excluded", "note": "outside scope"})
    assert r.status_code == 200 and r.json()["rejection_reason"] == "excluded"
    pay = await post(claims, f"/v1/claims/{cid}/pay")
    assert pay.status_code == 409
    assert pay.json()["code"] == "invalid_transition" and "rejected" in pay.json()["detail"]
    assert (await claims.http.get(f"/v1/claims/{cid}", headers=STAFF)).json()["status"] == "rejected"


async def test_bad_input_is_422_naming_the_field_unknown_claim_404_and_auth(claims: ClaimsUnderTest) -> None:
    cid = (await opened_claims(claims))["accident_injury"]["claim_id"]
    bad = await post(claims, f"/v1/claims/{cid}/approve", {"amount": "-5"})
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "amount"
    reason = await post(claims, f"/v1/claims/{cid}/reject", {"reason_code": "because"})
    assert reason.status_code == 422 and reason.json()["errors"][0]["field"] == "reason_code"
    docs = await post(claims, f"/v1/claims/{cid}/documents", {"documents": ["a_selfie"]})
    assert docs.status_code == 422 and docs.json()["errors"][0]["field"] == "documents"
    assert (await post(claims, f"/v1/claims/{uuid.uuid4()}/pay")).status_code == 404
    assert (await claims.http.get("/v1/claims/not-a-uuid", headers=STAFF)).status_code == 422
    assert (await claims.http.get("/v1/claims")).status_code == 401
    reader = {"Authorization": "Bearer local-integrator-token"}
    assert (await claims.http.get("/v1/claims", headers=reader)).status_code == 200
    assert (await claims.http.post(f"/v1/claims/{cid}/pay", headers=reader)).status_code == 403


async def test_idempotency_key_replays_the_first_answer(claims: ClaimsUnderTest) -> None:
    cid = (await opened_claims(claims))["card_non_work_accident"]["claim_id"]
    body = {"documents": ["id_copy"]}
    first = await post(claims, f"/v1/claims/{cid}/documents", body, **{"Idempotency-Key": "k-1"})
    second = await post(claims, f"/v1/claims/{cid}/documents", body, **{"Idempotency-Key": "k-1"})
    assert first.json() == second.json() and second.headers.get("idempotent-replayed") == "true"
    other = await post(
        claims, f"/v1/claims/{cid}/documents", {"documents": ["card_copy"]}, **{"Idempotency-Key": "k-1"}
    )
    assert other.status_code == 422
    history = (await claims.http.get(f"/v1/claims/{cid}", headers=STAFF)).json()["history"]
    assert [h["event_type"] for h in history].count("ClaimDocumentsReceived") == 1


async def test_illness_claim_obeys_the_female_special_disease_waiting_period(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    start = TODAY - timedelta(days=45)
    enrolment = f.enrolled(member, start, start + timedelta(days=364), plan="female_special_disease")
    await f.send(f.joined(member), f.card(member), enrolment)
    eid = enrolment.data["enrollment_id"]

    async def known() -> bool:
        # The enrolment itself must have reached the coverage model (it is the member's last event).
        async with claims.runtime.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(sa.func.count())
                .select_from(coverage_enrollments)
                .where(coverage_enrollments.c.enrollment_id == uuid.UUID(eid))
            )
        return found == 1

    await eventually(known)

    within = await post(
        claims,
        "/v1/claims",
        {
            "member_id": str(member),
            "plan_code": "female_special_disease",
            "enrollment_id": eid,
            "incident_on": (start + timedelta(days=10)).isoformat(),
        },
    )
    assert within.status_code == 201 and within.json()["status"] == "rejected"
    assert within.json()["rejection_reason"] == "waiting_period"

    condolence = await post(
        claims,
        "/v1/claims",
        {
            "member_id": str(member),
            "plan_code": "female_special_disease",
            "enrollment_id": eid,
            "incident_on": (start + timedelta(days=40)).isoformat(),
        },
    )
    assert condolence.status_code == 201
    cid = condolence.json()["claim_id"]
    await post(claims, f"/v1/claims/{cid}/documents", {"documents": condolence.json()["required_documents"]})
    assert (await post(claims, f"/v1/claims/{cid}/approve", {"amount": "501"})).status_code == 409
    assert (await post(claims, f"/v1/claims/{cid}/approve", {"amount": "500"})).status_code == 200

    twice = await post(
        claims,
        "/v1/claims",
        {
            "member_id": str(member),
            "plan_code": "female_special_disease",
            "enrollment_id": eid,
            "incident_on": (start + timedelta(days=40)).isoformat(),
        },
    )
    assert twice.status_code == 409
    injury_plan = await post(
        claims,
        "/v1/claims",
        {
            "member_id": str(member),
            "plan_code": "accident_injury",
            "enrollment_id": eid,
            "incident_on": start.isoformat(),
        },
    )
    assert injury_plan.status_code == 422 and injury_plan.json()["errors"][0]["field"] == "plan_code"


async def test_entitlements_view_explains_what_a_member_could_claim(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member))

    async def view() -> dict[str, Any] | None:
        r = await claims.http.get(
            f"/v1/members/{member}/entitlements",
            params={"on": "2016-08-02", "work_related": "true"},
            headers=STAFF,
        )
        body: dict[str, Any] = r.json()
        return body if any("work_related" in x for x in body["reasons"]) else None

    body = await eventually(view)
    assert body["entitlements"] == []
    assert any(r.startswith("no_enrollment") for r in body["reasons"])


async def test_concurrent_retries_with_one_idempotency_key_all_get_the_first_answer(
    claims: ClaimsUnderTest,
) -> None:
    cid = (await opened_claims(claims))["card_non_work_accident"]["claim_id"]
    body = {"documents": ["id_copy", "card_copy"]}
    answers = await asyncio.gather(
        *(post(claims, f"/v1/claims/{cid}/documents", body, **{"Idempotency-Key": "same"}) for _ in range(4))
    )
    assert [a.status_code for a in answers] == [200] * 4
    assert all(a.json() == answers[0].json() for a in answers)
    history = (await claims.http.get(f"/v1/claims/{cid}", headers=STAFF)).json()["history"]
    assert [h["event_type"] for h in history].count("ClaimDocumentsReceived") == 1


async def test_an_id_of_another_kind_of_record_is_not_found_not_a_500(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member))
    report = f.injury(member, AUG_2)  # no cover: the report's decision stream is named by its id
    await f.send(report)

    async def decided() -> bool:
        r = await claims.http.get(f"/v1/reports/{report.aggregate_id}", headers=STAFF)
        return r.status_code == 200 and r.json()["state"] == "no_coverage"

    await eventually(decided)
    for action, body in (
        ("approve", {"amount": "10"}),
        ("pay", {}),
        ("documents", {"documents": ["id_copy"]}),
    ):
        r = await post(claims, f"/v1/claims/{report.aggregate_id}/{action}", body)
        assert r.status_code == 404, (action, r.text)


async def test_staff_views_by_status_and_yearly_counts_per_plan(claims: ClaimsUnderTest) -> None:
    opened = await opened_claims(claims)
    card = opened["card_non_work_accident"]["claim_id"]
    member = opened["card_non_work_accident"]["member_id"]
    await post(claims, f"/v1/claims/{card}/reject", {"reason_code": "duplicate"})

    by_status = await claims.http.get(
        "/v1/claims", params={"member_id": member, "status": "rejected"}, headers=STAFF
    )
    assert [c["claim_id"] for c in by_status.json()["items"]] == [card]
    by_member = await claims.http.get("/v1/claims", params={"member_id": member}, headers=STAFF)
    assert len(by_member.json()["items"]) == 2

    stats = (await claims.http.get("/v1/statistics/claims", params={"year": 2016}, headers=STAFF)).json()
    plans = {p["plan_code"]: p for p in stats["plans"]}
    assert plans["card_non_work_accident"]["by_status"] == {"rejected": 1}  # a fresh database per test
    assert plans["accident_injury"]["by_status"] == {"filed": 1} and plans["accident_injury"]["claims"] == 1
    empty = (await claims.http.get("/v1/statistics/claims", params={"year": 2015}, headers=STAFF)).json()
    assert empty["plans"] == []
    assert (
        await claims.http.get("/v1/statistics/claims", params={"year": 1800}, headers=STAFF)
    ).status_code == 422
