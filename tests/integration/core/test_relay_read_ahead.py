"""The relay reads its next batch while the last one is sent and acknowledged (issue 8).

What must not change with it: a row that commits late, below positions already read ahead, is
still published; a batch that fails or holds back a stream sends nothing read ahead of it, so
order per aggregate and the hold survive. Real PostgreSQL and the real broker."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.eventstore import EventStore
from shared.kafka import reliable_producer
from shared.relay import OutboxRelay
from shared.tables import outbox
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import Renamed, registry
from tests.kafka_support import Received, eventually, read_topic

pytestmark = pytest.mark.integration


def store() -> EventStore:
    return EventStore("core-test", registry, max_event_bytes=4 * 1024 * 1024)


async def append(engine: AsyncEngine, stream: str, version: int, name: str) -> None:
    async with UnitOfWork(engine, store()) as uow:
        batch = uow.store.envelopes(
            "Counter", stream, version, [Renamed(new_name=name, reason="test")], correlation_id=uuid.uuid4()
        )
        await uow.store.append(uow.conn, batch)
        await uow.commit()


class WatchedRelay(OutboxRelay):
    """Counts the batches that were read ahead (sent without a fetch of their own)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_ahead_batches = 0

    async def publish_batch(self, producer: AIOKafkaProducer, conn: Any) -> int:
        if self._ahead:
            self.read_ahead_batches += 1
        return await super().publish_batch(producer, conn)


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def queued(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(outbox)) or 0)


async def _empty(engine: AsyncEngine) -> bool:
    return await queued(engine) == 0


def by_stream(received: list[Received]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for r in received:
        env = json.loads(r.value)
        out.setdefault(env["aggregate_id"], []).append(env["aggregate_version"])
    return out


async def test_a_late_commit_below_the_rows_read_ahead_is_still_published(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """A transaction takes its position, then 300 events commit above it and are relayed in
    batches of 20 (read ahead); when it commits at last, its event goes out too, once."""
    late = str(uuid.uuid4())
    streams = [str(uuid.uuid4()) for _ in range(30)]
    async with UnitOfWork(core_engine, store()) as held_open:
        await held_open.store.append(
            held_open.conn,
            held_open.store.envelopes(
                "Counter", late, 0, [Renamed(new_name="late", reason="test")], correlation_id=uuid.uuid4()
            ),
        )
        for i in range(300):
            await append(core_engine, streams[i % 30], i // 30, f"n{i}")
        relay = WatchedRelay(core_engine, store(), topic, kafka, batch_size=20, poll_interval=0.2)
        async with running(relay):
            await eventually(lambda: _empty(core_engine), timeout=60)
            assert relay.read_ahead_batches >= 10, "the backlog should have been read ahead"
            await held_open.commit()
            await eventually(lambda: _empty(core_engine), timeout=30)

    received = await read_topic(kafka, topic, expect=301, timeout=60)
    assert len(received) == 301, "each event once (no failure, so no duplicate)"
    versions = by_stream(received)
    assert versions[late] == [1]
    assert all(versions[s] == list(range(1, 11)) for s in streams)


class FailingFrom:
    """A real producer whose deliveries fail from its ``fail_at``-th send on (0: never), as they
    do when the broker goes away mid-batch. Not one record alone: under the idempotent
    producer a partition's later records never land without the earlier one."""

    def __init__(self, bootstrap: str, fail_at: int) -> None:
        self._producer = reliable_producer(bootstrap, linger_ms=0)
        self._fail_at = fail_at
        self.sends = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[object]:
        self.sends += 1
        if self._fail_at and self.sends >= self._fail_at:
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError("injected"))
            return failed
        future: asyncio.Future[object] = await self._producer.send(topic, **kwargs)
        return future


async def test_a_failed_delivery_sends_nothing_read_ahead_and_loses_nothing(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """Deliveries fail from the 35th record of the second batch on: the confirmed prefix is
    deleted, the batch read ahead is dropped, and the next leadership starts from the failed row,
    so every stream's deliveries stay in order, none is lost and none is sent twice."""
    streams = [str(uuid.uuid4()) for _ in range(7)]
    for i in range(280):
        await append(core_engine, streams[i % 7], i // 7, f"n{i}")
    producers: list[FailingFrom] = []

    def factory() -> Any:
        producers.append(FailingFrom(kafka, fail_at=85 if not producers else 0))
        return producers[-1]

    relay = WatchedRelay(
        core_engine,
        store(),
        topic,
        kafka,
        batch_size=50,
        poll_interval=0.2,
        max_backoff=0.2,
        producer_factory=factory,
    )
    async with running(relay):
        await eventually(lambda: _empty(core_engine), timeout=60)
    assert len(producers) == 2, "the failure ended the first leadership's batch, a retry finished"
    assert relay.read_ahead_batches >= 3

    received = await read_topic(kafka, topic, expect=280, timeout=60)
    assert len({r.headers["event_id"] for r in received}) == 280, "nothing lost"
    assert len(received) == 280, "nothing twice: the failed pass sent nothing it had read ahead"
    assert all(versions == list(range(1, 41)) for versions in by_stream(received).values())


async def test_a_held_stream_is_not_sent_from_a_batch_read_ahead(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """A full batch of 3 holds back a stream Kafka refuses; its next event was read ahead with
    the following batch, which is dropped, so that event waits behind the refused one."""
    a, big, c = (str(uuid.uuid4()) for _ in range(3))
    await append(core_engine, a, 0, "a1")
    await append(core_engine, big, 0, "x" * 1_500_000)  # over the producer's 1 MiB limit
    await append(core_engine, c, 0, "c1")
    await append(core_engine, big, 1, "big2")  # in the batch read ahead
    await append(core_engine, a, 1, "a2")
    await append(core_engine, c, 1, "c2")
    await append(core_engine, a, 2, "a3")

    relay = WatchedRelay(core_engine, store(), topic, kafka, batch_size=3, poll_interval=0.2)
    async with running(relay):
        await eventually(lambda: _queued_is(core_engine, 2), timeout=30)
        received = await read_topic(kafka, topic, expect=5, timeout=15)
    assert by_stream(received) == {a: [1, 2, 3], c: [1, 2]}, "big2 must not overtake the held big1"


async def _queued_is(engine: AsyncEngine, n: int) -> bool:
    return await queued(engine) == n
