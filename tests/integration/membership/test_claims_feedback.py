"""What the claims service reports back reaches the member's record. On the real PostgreSQL and Kafka."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shared.contracts import claims as claims_contract
from shared.envelope import EventEnvelope, utcnow
from shared.events import DomainEvent
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    STAFF,
    assert_nothing_personal_left,
    create,
    new_member,
)
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration


# --- claims reported back ---------------------------------------------------------------------


def claims_envelope(event: DomainEvent, aggregate_id: str, version: int) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        event_type=event.event_type,
        schema_version=event.schema_version,
        aggregate_type="Claim",
        aggregate_id=aggregate_id,
        aggregate_version=version,
        occurred_at=utcnow(),
        producer="claims",
        correlation_id=uuid.uuid4(),
        data=event.model_dump(mode="json"),
    )


async def test_claims_events_reach_the_member_record(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"], card=True)
    mid = m["member_id"]
    report = await create(
        service,
        f"/v1/members/{mid}/injury-reports",
        {
            "occurred_on": "2016-08-01",
            "work_related": False,
            "description": "手伤",
            "diagnosis": "裂伤",
        },
    )
    rid = uuid.UUID(report["report_id"])
    claim_id = uuid.uuid4()
    filed = claims_contract.ClaimFiled(
        claim_id=claim_id,
        member_id=uuid.UUID(mid),
        report_id=rid,
        plan_code="card_non_work_accident",
        benefit="card",
        enrollment_id=None,
        required_documents=["incident_certificate", "diagnosis"],
        incident_on=date(2016, 8, 1),
        filed_on=date(2016, 8, 10),
    )
    approved = claims_contract.ClaimApproved(
        claim_id=claim_id, amount=Decimal("1500.00"), approved_on=date(2016, 8, 20)
    )
    paid = claims_contract.ClaimPaid(
        claim_id=claim_id,
        member_id=uuid.UUID(mid),
        plan_code="card_non_work_accident",
        amount=Decimal("1500.00"),
        paid_on=date(2016, 8, 25),
    )
    sent = [claims_envelope(e, str(claim_id), i) for i, e in enumerate((filed, approved, paid), start=1)]
    other = await new_member(service, tree["grassroots"])
    other_report = await create(
        service,
        f"/v1/members/{other['member_id']}/injury-reports",
        {
            "occurred_on": "2016-08-01",
            "work_related": True,
            "description": "x",
            "diagnosis": "y",
        },
    )
    nothing = claims_contract.NoCoverageFound(
        report_id=uuid.UUID(other_report["report_id"]),
        member_id=uuid.UUID(other["member_id"]),
        reasons=[
            "no accident_injury enrolment covers 2016-08-01",
            "work-related: the card benefit does not apply",
        ],
    )
    no_cover = claims_envelope(nothing, other_report["report_id"], 1)
    unknown = sent[0].model_copy(update={"event_id": uuid.uuid4(), "event_type": "ClaimSomethingNew"})

    producer = AIOKafkaProducer(bootstrap_servers=service.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for env in [*sent, sent[1], no_cover, unknown]:  # one redelivery, one unknown type
            await producer.send_and_wait(
                service.claims_topic,
                env.to_bytes(),
                key=env.aggregate_id.encode(),
                headers=env.kafka_headers(),
            )
    finally:
        await producer.stop()

    async def claim_paid() -> Any:
        r = await service.client.get(f"/v1/members/{mid}", headers=STAFF)
        claims = r.json()["claims"]
        return claims if claims and claims[0]["status"] == "paid" else None

    [claim] = await eventually(claim_paid, timeout=60)
    assert (claim["claim_id"], claim["amount"], claim["benefit"]) == (str(claim_id), "1500.00", "card")
    assert claim["report_id"] == str(rid)

    timeline = (await service.client.get(f"/v1/members/{mid}/timeline", headers=STAFF)).json()["items"]
    claims_part = [(t["source"], t["event_type"]) for t in timeline if t["source"] == "claims"]
    assert claims_part == [("claims", "ClaimFiled"), ("claims", "ClaimApproved"), ("claims", "ClaimPaid")]

    async def no_cover_seen() -> Any:
        r = await service.client.get(f"/v1/injury-reports/{other_report['report_id']}", headers=STAFF)
        return r.json()["no_coverage_reasons"]

    assert await eventually(no_cover_seen, timeout=30) == nothing.reasons
    detail = (await service.client.get(f"/v1/injury-reports/{rid}", headers=STAFF)).json()
    assert [c["claim_id"] for c in detail["claims"]] == [str(claim_id)]


# --- last: nothing personal ever left the service ---------------------------------------------


async def test_no_personal_data_on_kafka_in_events_or_logs(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])


async def test_a_run_of_claims_events_leaves_what_one_by_one_leaves(service: Service) -> None:
    """The consumer hands a batch's ClaimFiled events to ``project_claim_events`` together
    (shared.inbox.RunReaction): the member's record must be the same as event by event, a claim
    decided in the same run included."""
    from sqlalchemy import text

    from services.membership.projections import project_claim_event, project_claim_events

    member, report = uuid.uuid4(), uuid.uuid4()
    claims = [uuid.uuid4(), uuid.uuid4()]

    def filed(claim_id: uuid.UUID, benefit: str) -> EventEnvelope:
        event = claims_contract.ClaimFiled(
            claim_id=claim_id,
            member_id=member,
            report_id=report,
            plan_code="card_non_work_accident" if benefit == "card" else "accident_injury",
            benefit=benefit,
            enrollment_id=None if benefit == "card" else uuid.uuid4(),
            required_documents=["diagnosis"],
            incident_on=date(2016, 8, 1),
            filed_on=date(2016, 8, 10),
        )
        return claims_envelope(event, str(claim_id), 1)

    approved = claims_envelope(
        claims_contract.ClaimApproved(
            claim_id=claims[0], amount=Decimal("10.00"), approved_on=date(2016, 8, 20)
        ),
        str(claims[0]),
        2,
    )
    run = [filed(claims[0], "card"), filed(claims[1], "paid"), approved]
    queries = [
        "SELECT claim_id, member_id, report_id, plan_code, benefit, enrollment_id, status,"
        " required_documents, updated_at FROM member_claims WHERE member_id = :m ORDER BY claim_id",
        "SELECT event_id, claim_id, report_id, occurred_at, aggregate_version, event_type, data"
        " FROM claim_events WHERE member_id = :m ORDER BY event_id",
    ]

    async def project(together: bool) -> list[list[tuple[object, ...]]]:
        async with service.runtime.engine.begin() as conn:
            if together:
                await project_claim_events(conn, run)
            else:
                for env in run:
                    await project_claim_event(conn, env)
            seen = [[tuple(r) for r in (await conn.execute(text(q), {"m": member})).all()] for q in queries]
            await conn.execute(text("DELETE FROM claim_events WHERE member_id = :m"), {"m": member})
            await conn.execute(text("DELETE FROM member_claims WHERE member_id = :m"), {"m": member})
        return seen

    one_by_one, together = await project(False), await project(True)
    assert len(one_by_one[0]) == 2 and len(one_by_one[1]) == 3
    assert together == one_by_one
