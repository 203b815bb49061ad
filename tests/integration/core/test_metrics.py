"""The figures operators alert on, against the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.eventstore import EventStore
from shared.kafka import dlq_topic, ensure_topics
from shared.metrics import ServiceMetrics, consumer_lag, outbox_stats, topic_sizes
from tests.integration.core.sample import Counted, registry

pytestmark = pytest.mark.integration


async def _produce(kafka: str, topic: str, per_partition: dict[int, int]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=kafka)
    await producer.start()
    try:
        for partition, count in per_partition.items():
            for i in range(count):
                await producer.send_and_wait(topic, f"m{i}".encode(), partition=partition)
    finally:
        await producer.stop()


async def _commit(kafka: str, group: str, offsets: dict[TopicPartition, int]) -> None:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(list(offsets))
        await consumer.commit(offsets)
    finally:
        await consumer.stop()


async def test_outbox_depth_and_age_of_the_oldest_event(core_engine: AsyncEngine) -> None:
    empty = await outbox_stats(core_engine)
    assert (empty.depth, empty.oldest_age_seconds) == (0, None)
    store = EventStore("metrics-test", registry)
    async with core_engine.begin() as conn:
        stream = str(uuid.uuid4())
        await store.append(
            conn,
            store.envelopes("Counter", stream, 0, [Counted(n=1), Counted(n=2)], correlation_id=uuid.uuid4()),
        )
    await asyncio.sleep(1.1)
    stats = await outbox_stats(core_engine)
    assert stats.depth == 2 and stats.oldest_age_seconds is not None and stats.oldest_age_seconds >= 1.0

    await ServiceMetrics(core_engine, "127.0.0.1:1", timeout=2).refresh({}, [])
    assert REGISTRY.get_sample_value("outbox_depth") == 2
    assert (REGISTRY.get_sample_value("outbox_oldest_event_age_seconds") or 0) >= 1.0


async def test_consumer_lag_per_group_and_partition(kafka: str, topic: str, core_engine: AsyncEngine) -> None:
    await ensure_topics(kafka, [topic], partitions=2)
    await _produce(kafka, topic, {0: 3, 1: 2})
    committed, fresh = f"g.{uuid.uuid4().hex[:8]}", f"g.{uuid.uuid4().hex[:8]}"
    await _commit(kafka, committed, {TopicPartition(topic, 0): 1})

    lags = await consumer_lag(kafka, {committed: [topic], fresh: [topic]})
    by_key = {(x.group, x.partition): (x.committed, x.end, x.lag) for x in lags}
    assert by_key == {
        (committed, 0): (1, 3, 2),
        (committed, 1): (None, 2, 2),  # never committed: everything retained is unread
        (fresh, 0): (None, 3, 3),
        (fresh, 1): (None, 2, 2),
    }

    await ServiceMetrics(core_engine, kafka).refresh({committed: [topic]}, [])
    assert (
        REGISTRY.get_sample_value("consumer_lag", {"group": committed, "topic": topic, "partition": "0"}) == 2
    )


async def test_dead_letter_count(kafka: str, topic: str, core_engine: AsyncEngine) -> None:
    dlq = dlq_topic(topic)
    await ensure_topics(kafka, [dlq], partitions=3)
    await _produce(kafka, dlq, {0: 1, 2: 3})
    missing = f"{topic}.never"
    assert await topic_sizes(kafka, [dlq, missing]) == {dlq: 4, missing: 0}

    await ServiceMetrics(core_engine, kafka).refresh({}, [dlq])
    assert REGISTRY.get_sample_value("dlq_messages", {"topic": dlq}) == 4


async def test_an_unreachable_kafka_does_not_fail_the_scrape(core_engine: AsyncEngine) -> None:
    metrics = ServiceMetrics(core_engine, "127.0.0.1:1", timeout=2)
    await asyncio.wait_for(metrics.refresh({"g": ["t"]}, ["t.dlq"]), timeout=10)
    assert REGISTRY.get_sample_value("ops_metrics_refresh_failed", {"source": "kafka"}) == 1
    assert REGISTRY.get_sample_value("ops_metrics_refresh_failed", {"source": "database"}) == 0
