"""The membership consumer of claims.events (group membership.claims) on the real broker and
database tolerates a newer claims release: unknown envelope and payload fields, unknown event
types. Nothing is dead-lettered and the known events still reach the member's record."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shared.contracts import claims as c
from shared.envelope import EventEnvelope, utcnow
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import STAFF, new_member, union_tree
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration


def grown(event_type: str, data: dict[str, Any], aggregate_id: str, version: int) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        event_type=event_type,
        schema_version=1,
        aggregate_type="Claim",
        aggregate_id=aggregate_id,
        aggregate_version=version,
        occurred_at=utcnow(),
        producer="claims",
        correlation_id=uuid.uuid4(),
        data=data,
    )


async def test_unknown_fields_and_types_from_claims_are_tolerated(service: Service) -> None:
    tree = await union_tree(service, "·tolerance")
    member = (await new_member(service, tree["grassroots"], card=True))["member_id"]
    claim_id = str(uuid.uuid4())
    filed = c.ClaimFiled(
        claim_id=uuid.UUID(claim_id),
        member_id=uuid.UUID(member),
        report_id=None,
        plan_code="critical_illness",
        benefit="paid",
        enrollment_id=uuid.uuid4(),
        required_documents=["id_copy"],
        incident_on=date(2016, 8, 1),
        filed_on=date(2016, 8, 5),
    ).model_dump(mode="json")
    messages = [
        grown("ClaimFiled", {**filed, "assessor_region": "shunyi"}, claim_id, 1),
        grown("ClaimAppealed", {"claim_id": claim_id, "appealed_on": "2016-08-06"}, claim_id, 2),
        grown(
            "ClaimRejected",
            {
                "claim_id": claim_id,
                "reason_code": "waiting_period",
                "rejected_on": "2016-08-07",
                "appeal_window_days": 15,
            },
            claim_id,
            3,
        ),
    ]
    producer = AIOKafkaProducer(bootstrap_servers=service.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for env in messages:
            raw = json.loads(env.to_bytes())
            raw["trace"] = {"span": "0af7651916cd43dd"}  # an envelope field added later
            await producer.send_and_wait(
                service.claims_topic,
                json.dumps(raw).encode(),
                key=env.kafka_key(),
                headers=env.kafka_headers(),
            )
    finally:
        await producer.stop()

    async def rejected() -> Any:
        claims = (await service.client.get(f"/v1/members/{member}", headers=STAFF)).json()["claims"]
        return claims if claims and claims[0]["status"] == "rejected" else None

    [claim] = await eventually(rejected, timeout=30)
    assert claim["claim_id"] == claim_id and claim["plan_code"] == "critical_illness"
    dlq = await read_topic(service.kafka, f"{service.claims_topic}.dlq", expect=1, timeout=3)
    assert dlq == []
