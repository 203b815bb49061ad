"""Kafka plumbing shared by the relay, the consumers, the tests and the benchmarks."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

log = logging.getLogger(__name__)


def reliable_producer(bootstrap_servers: str, **overrides: object) -> AIOKafkaProducer:
    """acks=all + idempotence: no loss on broker failover, no duplicates from producer retries,
    and order per partition kept across retries."""
    config: dict[str, object] = {
        "bootstrap_servers": bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "request_timeout_ms": 10_000,
        "max_batch_size": 256 * 1024,
    }
    config.update(overrides)
    return AIOKafkaProducer(**config)


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], *, partitions: int = 3, replication: int = 1
) -> None:
    """Create topics that do not exist yet (production clusters may pre-create them instead)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [NewTopic(t, num_partitions=partitions, replication_factor=replication) for t in missing]
            )
        log.info("created topics %s", missing)
    finally:
        await admin.close()


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"
