"""The relay workload: our outbox relay publishing a filled outbox to Kafka, against a plain
aiokafka producer sending the very same messages."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.contenders import RAW_INSERT_MANY, reset_statements
from bench.harness import KAFKA_PARTITIONS, RAW_PRODUCER_CONFIG, Counted, Result, Series, registry
from shared.eventstore import EventStore
from shared.kafka import ensure_topics
from shared.relay import OutboxRelay
from shared.tables import events, outbox

# --------------------------------------------------------------------------- relay workload

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


async def fill_outbox(
    conn: asyncpg.Connection, store: EventStore, args: argparse.Namespace, n: int, base: int = 0
) -> None:
    """Empty the tables, then store ``n`` events: envelopes made by our EventStore (``args.batch``
    per command, round-robin over ``args.streams`` streams), rows written in bulk with the raw
    unnest statement (the relay reads rows, so how they got there does not matter). Not timed.
    With a prebuilt store (``base``), only the rows of earlier runs go; the store stays."""
    for statement in reset_statements(base):
        await conn.execute(statement)
    streams = [str(uuid.uuid4()) for _ in range(max(1, args.streams))]
    versions = dict.fromkeys(streams, 0)
    note = "x" * args.payload
    rows: list[tuple[Any, ...]] = []
    for i in range(max(1, -(-n // args.batch))):
        stream = streams[i % len(streams)]
        k = min(args.batch, n - len(rows))
        batch = store.envelopes(
            "Counter",
            stream,
            versions[stream],
            [Counted(n=1, note=note) for _ in range(k)],
            correlation_id=uuid.uuid4(),
        )
        versions[stream] += k
        rows.extend(
            (
                e.event_id,
                e.aggregate_type,
                e.aggregate_id,
                e.aggregate_version,
                e.event_type,
                e.schema_version,
                e.occurred_at,
                e.correlation_id,
                e.causation_id,
                json.dumps(e.data),
            )
            for e in batch
        )
    for chunk in range(0, len(rows), 2000):
        columns = list(zip(*rows[chunk : chunk + 2000], strict=True))
        await conn.fetch(RAW_INSERT_MANY, *columns)


async def outbox_messages(engine: AsyncEngine, store: EventStore) -> list[Message]:
    """Exactly what the relay will send for the current outbox: same keys, headers, values."""
    async with engine.connect() as conn:
        rows = (
            (
                await conn.execute(
                    sa.select(events)
                    .join(outbox, outbox.c.position == events.c.position)
                    .order_by(events.c.position)
                )
            )
            .mappings()
            .all()
        )
    envelopes = [store.as_published(row) for row in rows]
    return [(e.kafka_key(), e.to_bytes(), e.kafka_headers()) for e in envelopes]


def _published(topic: str) -> float:
    value = REGISTRY.get_sample_value("relay_events_published_total", {"topic": topic})
    return value or 0.0


async def run_relay(
    engine: AsyncEngine, store: EventStore, topic: str, kafka: str, n: int, args: argparse.Namespace
) -> Result:
    """A fresh OutboxRelay; the clock starts once it is leader with a started producer
    (relay.ready) and stops when its confirmed-and-deleted count reaches ``n``."""
    relay = OutboxRelay(engine, store, topic, kafka, batch_size=args.relay_batch, poll_interval=1.0)
    stop = asyncio.Event()
    before = _published(topic)
    task = asyncio.create_task(relay.run(stop), name=f"relay-{topic}")
    try:
        await asyncio.wait_for(relay.ready.wait(), timeout=30)
        start = time.perf_counter()
        deadline = start + args.max_seconds
        capped = False
        while _published(topic) - before < n:
            if task.done():
                raise RuntimeError(f"relay stopped early: {task.exception()!r}")
            if time.perf_counter() > deadline:
                capped = True
                break
            await asyncio.sleep(0.001)
        elapsed = time.perf_counter() - start
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
    done = int(_published(topic) - before)
    async with engine.connect() as conn:
        left = await conn.scalar(sa.select(sa.func.count()).select_from(outbox))
    if not capped and left:
        raise RuntimeError(f"relay reported {done} published but {left} rows are left in the outbox")
    return Result(done, elapsed, capped=capped)


async def run_raw_kafka(kafka: str, topic: str, messages: Sequence[Message], max_seconds: float) -> Result:
    """A fresh plain producer (started before the clock, like the relay's); send every message,
    await every delivery future."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, **RAW_PRODUCER_CONFIG)
    await producer.start()
    try:
        start = time.perf_counter()

        async def send_all() -> None:
            futures = [
                await producer.send(topic, value=value, key=key, headers=headers)
                for key, value, headers in messages
            ]
            await asyncio.gather(*futures)

        await asyncio.wait_for(send_all(), timeout=max_seconds)
        elapsed = time.perf_counter() - start
    finally:
        await producer.stop()
    return Result(len(messages), elapsed)


async def topic_size(kafka: str, topic: str) -> int:
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka)
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(KAFKA_PARTITIONS)]
        ends = await asyncio.wait_for(consumer.end_offsets(partitions), timeout=30)
        return int(sum(ends.values()))
    finally:
        await consumer.stop()


async def measure_relay(
    engine: AsyncEngine,
    filler: asyncpg.Connection,
    kafka: str,
    topics: tuple[str, str],
    args: argparse.Namespace,
    base: int = 0,
) -> dict[str, Series]:
    store = EventStore("bench-core", registry)
    ours_topic, raw_topic = topics
    await ensure_topics(kafka, [ours_topic, raw_topic], partitions=KAFKA_PARTITIONS)
    series = {"ours": Series(), "raw": Series()}
    sent = 0
    warm = max(1, min(args.relay_events, args.relay_batch * 2))
    for r in range(-1, args.rounds):  # round -1 is the warm-up
        n = warm if r < 0 else args.relay_events
        await fill_outbox(filler, store, args, n, base)
        messages = await outbox_messages(engine, store)
        assert len(messages) == n
        order = ["ours", "raw"] if r % 2 == 0 else ["raw", "ours"]
        for name in order:
            if name == "ours":
                result = await run_relay(engine, store, ours_topic, kafka, n, args)
            else:
                result = await run_raw_kafka(kafka, raw_topic, messages, args.max_seconds)
            if r >= 0:
                series[name].results.append(result)
                print(f"  relay    round {r + 1} {name:<14} {result.rate:>10,.0f} ev/s", flush=True)
        sent += n
    sizes = [await topic_size(kafka, topic) for topic in topics]
    if sizes == [sent, sent]:
        print(f"  relay    verified: both topics hold exactly {sent} messages (no loss, no duplicates)")
    else:
        print(f"  relay    WARNING: topics hold {sizes} messages, {sent} were sent to each")
    return series
