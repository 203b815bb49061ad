"""activities.events on the member's timeline (group membership.activities), on the real broker."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from shared.contracts import activities as a
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import STAFF, new_member, union_tree
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration

AT = datetime(2016, 5, 8, 1, 0, tzinfo=UTC)


def activity_envelope(event: DomainEvent, activity_id: uuid.UUID, version: int) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        event_type=event.event_type,
        schema_version=event.schema_version,
        aggregate_type="Activity",
        aggregate_id=str(activity_id),
        aggregate_version=version,
        occurred_at=AT.replace(minute=version),
        producer="activities",
        correlation_id=uuid.uuid4(),
        data=event.model_dump(mode="json"),
    )


async def test_registrations_places_and_attendance_reach_the_member_timeline(service: Service) -> None:
    tree = await union_tree(service, "-activities")
    mid = uuid.UUID((await new_member(service, tree["grassroots"]))["member_id"])
    activity, registration = uuid.uuid4(), uuid.uuid4()
    common: dict[str, Any] = {"activity_id": activity, "registration_id": registration, "member_id": mid}
    sent = [
        activity_envelope(
            a.ActivityScheduled(
                activity_id=activity,
                kind=a.ActivityKind.PARENT_CHILD,
                title="Mother's Day",
                starts_at=AT,
                ends_at=AT,
                venue="Flower centre",
                capacity=1,
                audience=a.Audience.MEMBER_FAMILIES,
            ),
            activity,
            1,
        ),
        activity_envelope(a.RegistrationWaitlisted(**common, position=1, registered_at=AT), activity, 2),
        activity_envelope(
            a.RegistrationConfirmed(
                activity_id=activity, registration_id=uuid.uuid4(), resident_ref="res_x", registered_at=AT
            ),
            activity,
            3,
        ),
        activity_envelope(a.WaitlistPromoted(**common, promoted_at=AT), activity, 4),
        activity_envelope(a.AttendanceRecorded(**common, checked_in_at=AT), activity, 5),
    ]
    unknown = sent[1].model_copy(
        update={"event_id": uuid.uuid4(), "event_type": "SomethingNew", "aggregate_version": 6}
    )
    producer = AIOKafkaProducer(bootstrap_servers=service.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for env in [*sent, sent[2], unknown]:  # one redelivery, one type this release does not know
            await producer.send_and_wait(
                service.settings.activities_topic,
                env.to_bytes(),
                key=env.kafka_key(),
                headers=env.kafka_headers(),
            )
    finally:
        await producer.stop()

    async def activity_entries() -> list[str] | None:
        items = (await service.client.get(f"/v1/members/{mid}/timeline", headers=STAFF)).json()["items"]
        entries = [t["event_type"] for t in items if t["source"] == "activities"]
        return entries if "AttendanceRecorded" in entries else None

    assert await eventually(activity_entries, timeout=60) == [
        "RegistrationWaitlisted",
        "WaitlistPromoted",
        "AttendanceRecorded",
    ]
