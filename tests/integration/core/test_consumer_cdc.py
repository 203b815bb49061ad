"""A topic published by the relay, then by Debezium, around a cutover: the consumer applies every
event once, in stream order, whichever form (or both) reached it. Real PostgreSQL and Kafka; the
Debezium records are built from the stored rows by the shipped connector configuration
(tests/cdc_form.py), since Debezium itself cannot run here."""

from __future__ import annotations

import asyncio
import contextlib
import uuid

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.eventstore import EventStore
from shared.kafka import ensure_topics
from shared.relay import OutboxRelay
from shared.tables import events
from shared.unit_of_work import UnitOfWork
from tests.cdc_form import debezium_record
from tests.integration.core.sample import Counter, registry
from tests.integration.core.test_consumer import applied, consuming, engine  # noqa: F401
from tests.integration.core.test_relay import drained
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration


async def append(db: AsyncEngine, stream: str, values: list[int]) -> None:
    async with UnitOfWork(db, EventStore("upstream", registry)) as uow:
        counter = await uow.load(Counter, stream)
        for n in values:
            counter.count(n)
        await uow.save(counter)
        await uow.commit()


async def test_relay_then_debezium_with_an_overlap_is_applied_once_in_order(
    engine: AsyncEngine,  # noqa: F811
    kafka: str,
    topic: str,
) -> None:
    await ensure_topics(kafka, [topic], partitions=3)
    streams = [str(uuid.uuid4()) for _ in range(3)]
    for s in streams:
        await append(engine, s, [1, 2, 3, 4])

    # Before the cutover: the relay publishes everything so far.
    relay = OutboxRelay(engine, EventStore("upstream", registry), topic, kafka, poll_interval=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: drained(engine), timeout=60)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    # The slot was created before the relay stopped: Debezium sends the last two events of each
    # stream again (overlap), then the events appended after the relay stopped, only by it.
    for s in streams:
        await append(engine, s, [5, 6])
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(events).order_by(events.c.position))).mappings().all()
    overlap = [r for r in rows if r["version"] >= 3]
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for row in overlap:
            _, key, value, headers = debezium_record(dict(row))
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()

    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        for s in streams:
            await eventually(lambda s=s: _applied_is(engine, s, [1, 2, 3, 4, 5, 6]), timeout=60)
        await asyncio.sleep(1)  # anything left over would show up now
    for s in streams:
        assert await applied(engine, s) == [1, 2, 3, 4, 5, 6]


async def _applied_is(db: AsyncEngine, stream: str, expected: list[int]) -> bool:
    with contextlib.suppress(Exception):
        return await applied(db, stream) == expected
    return False
