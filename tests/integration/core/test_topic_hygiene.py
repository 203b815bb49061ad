"""The suite's topic cleanup against the real broker: it deletes what matches and nothing else."""

from __future__ import annotations

import re
import uuid

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from shared.kafka import ensure_topics
from tests.kafka_support import eventually
from tests.topic_hygiene import TEST_TOPIC, delete_test_topics

pytestmark = pytest.mark.integration


async def _topics(kafka: str) -> set[str]:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()


async def test_only_the_matching_topics_are_deleted(kafka: str) -> None:
    token = uuid.uuid4().hex[:12]
    doomed = [f"test.{token}.membership.events", f"test.{token}.membership.events.dlq"]
    kept = f"keep{token}.membership.events"  # not a test name: the cleanup must leave it
    await ensure_topics(kafka, [*doomed, kept])

    async def created() -> bool:  # the controller answers before every broker's metadata has them
        return {*doomed, kept} <= await _topics(kafka)

    assert await eventually(created, timeout=30)
    # Only this test's token: other sessions' topics on this broker are not this test's to delete.
    mine = re.compile(rf"^test\.{token}\.")
    assert all(TEST_TOPIC.match(t) for t in doomed)

    deleted = await delete_test_topics(kafka, pattern=mine)

    assert sorted(deleted) == sorted(doomed)

    async def gone() -> bool:
        present = await _topics(kafka)
        return not (set(doomed) & present) and kept in present

    assert await eventually(gone, timeout=30)
    assert await delete_test_topics(kafka, pattern=re.compile(rf"^keep{token}\.")) == [kept]
