"""Topics the services create keep their events for good, and dead letters for 30 days.

A consumer group reset to offset 0 (a projection rebuild, a new integrator) applies each stream
from its first version and waits for a missing one, so an event topic that deleted old segments
would park every older stream for ever.
"""

from __future__ import annotations

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.kafka import DLQ_RETENTION_MS, dlq_topic, ensure_topics

pytestmark = pytest.mark.integration


async def _retention_ms(bootstrap: str, topic: str) -> int:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        (response,) = await admin.describe_configs([ConfigResource(ConfigResourceType.TOPIC, topic)])
    finally:
        await admin.close()
    (resource,) = response.resources
    configs = {entry[0]: entry[1] for entry in resource[4]}
    return int(configs["retention.ms"])


async def test_event_topics_keep_everything_and_dead_letters_expire(kafka: str, topic: str) -> None:
    await ensure_topics(kafka, [topic, dlq_topic(topic)])

    assert await _retention_ms(kafka, topic) == -1
    assert await _retention_ms(kafka, dlq_topic(topic)) == DLQ_RETENTION_MS == 30 * 24 * 3600 * 1000
