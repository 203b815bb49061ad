"""The outbox relay against the real PostgreSQL and the real Kafka, including its faults."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.relay import OutboxRelay
from shared.tables import outbox
from shared.unit_of_work import UnitOfWork, retrying
from tests.integration.core.sample import Counter, registry
from tests.kafka_broker import REPO, PrivateKafka
from tests.kafka_support import Received, eventually, read_topic

pytestmark = pytest.mark.integration


def store() -> EventStore:
    return EventStore("core-test", registry)


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[OutboxRelay]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield relay
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def write(engine: AsyncEngine, streams: list[str], count: int, *, seed: int) -> None:
    """One writer: ``count`` single-event commands on random streams, retrying conflicts."""
    rnd = random.Random(seed)
    es = store()
    for _ in range(count):
        stream = rnd.choice(streams)

        async def add(uow: UnitOfWork, stream: str = stream) -> None:
            counter = await uow.load(Counter, stream)
            counter.count(1)
            await uow.save(counter)

        await retrying(lambda: UnitOfWork(engine, es), add, attempts=50)


def by_stream(received: list[Received]) -> dict[str, list[int]]:
    versions: dict[str, list[int]] = defaultdict(list)
    for r in received:
        env = json.loads(r.value)
        versions[env["aggregate_id"]].append(env["aggregate_version"])
    return versions


async def pending(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(outbox)) or 0)


async def test_four_concurrent_writers_2000_events_all_published_in_stream_order(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    streams = [str(uuid.uuid4()) for _ in range(60)]
    relay = OutboxRelay(core_engine, store(), topic, kafka, batch_size=200, poll_interval=0.2)
    async with running(relay):
        await asyncio.gather(*(write(core_engine, streams, 500, seed=i) for i in range(4)))
        await eventually(lambda: drained(core_engine), timeout=60)

    received = await read_topic(kafka, topic, expect=2000, timeout=60)
    ids = [r.headers["event_id"] for r in received]
    assert len(set(ids)) == 2000, "every event published"
    assert len(ids) == 2000, "no duplicates without a crash"
    for stream, versions in by_stream(received).items():
        assert versions == sorted(versions), f"stream {stream} out of order on Kafka"
        assert versions == list(range(1, len(versions) + 1)), f"stream {stream} has a gap"
    # Contract: key = aggregate id, headers present.
    sample = received[0]
    env = json.loads(sample.value)
    assert sample.key == env["aggregate_id"].encode()
    assert {"event_type", "event_id", "schema_version", "correlation_id"} <= set(sample.headers)


async def drained(engine: AsyncEngine) -> bool:
    return await pending(engine) == 0


async def test_relay_killed_mid_batch_then_restarted_loses_nothing(
    core_engine: AsyncEngine, database_url: str, kafka: str, topic: str
) -> None:
    streams = [str(uuid.uuid4()) for _ in range(20)]
    await write(core_engine, streams, 1500, seed=7)
    assert await pending(core_engine) == 1500

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.core.relay_process", database_url, topic, kafka, "25"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    proc = start()
    try:
        deadline = time.monotonic() + 60
        while await pending(core_engine) > 1000 and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        left = await pending(core_engine)
        assert 0 < left < 1500, f"the kill should land mid-stream (left {left})"
        proc = start()
        await eventually(lambda: drained(core_engine), timeout=60)
    finally:
        proc.kill()
        proc.wait(timeout=10)

    received = await read_topic(kafka, topic, expect=1500, timeout=60)
    assert len({r.headers["event_id"] for r in received}) == 1500
    for stream, versions in by_stream(received).items():
        # Duplicates are allowed after a crash; what is delivered for the first time is in order.
        firsts = list(dict.fromkeys(versions))
        assert firsts == sorted(firsts), f"stream {stream} out of order"


async def test_kafka_down_while_200_events_are_appended_then_all_arrive(
    core_engine: AsyncEngine, topic: str
) -> None:
    broker = PrivateKafka()
    broker.start()
    try:
        relay = OutboxRelay(
            core_engine, store(), topic, broker.bootstrap, batch_size=50, poll_interval=0.2, max_backoff=1.0
        )
        streams = [str(uuid.uuid4()) for _ in range(10)]
        async with running(relay):
            await eventually(lambda: _ready(relay), timeout=60)
            broker.stop()
            started = time.monotonic()
            await write(core_engine, streams, 200, seed=3)  # writers never notice Kafka is gone
            writing_took = time.monotonic() - started
            assert await pending(core_engine) == 200, "nothing could have been published"
            broker.start()
            await eventually(lambda: drained(core_engine), timeout=90)
        received = await read_topic(broker.bootstrap, topic, expect=200, timeout=60)
    finally:
        broker.close()
    assert len({r.headers["event_id"] for r in received}) == 200
    assert writing_took < 30, "appends must not wait for Kafka"
    for stream, versions in by_stream(received).items():
        firsts = list(dict.fromkeys(versions))
        assert firsts == sorted(firsts), f"stream {stream} out of order"


async def _ready(relay: OutboxRelay) -> bool:
    return relay.ready.is_set()


async def test_only_one_relay_publishes_at_a_time(core_engine: AsyncEngine, kafka: str, topic: str) -> None:
    streams = [str(uuid.uuid4()) for _ in range(5)]
    await write(core_engine, streams, 100, seed=11)
    a = OutboxRelay(core_engine, store(), topic, kafka, batch_size=10, poll_interval=0.1)
    b = OutboxRelay(core_engine, store(), topic, kafka, batch_size=10, poll_interval=0.1)
    async with running(a), running(b):
        await eventually(lambda: drained(core_engine), timeout=60)
        assert a.ready.is_set() != b.ready.is_set(), "exactly one relay became leader"
    received = await read_topic(kafka, topic, expect=100, timeout=30)
    assert len(received) == 100


async def test_published_bytes_are_exactly_the_stored_envelope(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """The database renders the JSON; it must read back as the very envelope the store holds."""
    es = store()
    stream = str(uuid.uuid4())
    cause = uuid.uuid4()
    async with UnitOfWork(core_engine, es, causation_id=cause) as uow:
        counter = await uow.load(Counter, stream)
        counter.count(3)
        counter.count(4)
        await uow.save(counter)
        await uow.commit()
    relay = OutboxRelay(core_engine, es, topic, kafka, poll_interval=0.1)
    async with running(relay):
        await eventually(lambda: drained(core_engine))
    received = await read_topic(kafka, topic, expect=2)
    async with core_engine.connect() as conn:
        stored = await es.read_stream(conn, stream)
    published = [EventEnvelope.from_bytes(r.value) for r in received]
    assert published == stored
    assert [dict(r.headers) for r in received] == [dict(e.kafka_headers()) for e in stored]
    assert all(r.key == stream.encode() for r in received)
    assert published[0].causation_id == cause and json.loads(received[0].value)["data"] == {"n": 3}


async def test_a_commit_during_a_publish_is_relayed_at_once_not_after_a_poll_interval(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """The NOTIFY of an append that commits while a batch is being published must not be lost
    (it used to be erased after the publish, and the event waited a whole poll interval)."""
    from shared.kafka import reliable_producer

    in_publish = asyncio.Event()

    class SlowProducer:
        """A real producer whose sends take a while, so a commit lands inside a publish."""

        def __init__(self) -> None:
            self.inner = reliable_producer(kafka)

        async def start(self) -> None:
            await self.inner.start()

        async def stop(self) -> None:
            await self.inner.stop()

        async def send(self, *args: object, **kwargs: object) -> object:
            in_publish.set()
            await asyncio.sleep(0.5)
            return await self.inner.send(*args, **kwargs)

    relay = OutboxRelay(
        core_engine,
        store(),
        topic,
        kafka,
        poll_interval=10.0,
        producer_factory=SlowProducer,  # type: ignore[arg-type]
    )
    async with running(relay):
        await asyncio.wait_for(relay.ready.wait(), timeout=30)
        await write(core_engine, ["first"], 1, seed=1)
        await asyncio.wait_for(in_publish.wait(), timeout=10)
        started = time.monotonic()
        await write(core_engine, ["second"], 1, seed=2)  # commits while "first" is being sent
        await eventually(lambda: _zero(core_engine), timeout=30, interval=0.02)
        took = time.monotonic() - started
    assert took < 3.0, f"the second event waited {took:.2f}s (poll interval 10s): its wake-up was lost"


async def test_commits_within_the_gather_window_go_out_in_one_batch(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """After a wake-up the relay waits ``gather`` before reading the outbox: three commits made
    inside that window are one read, one produce request and one delete, not three; and nothing
    waits for the poll interval."""

    class CountingRelay(OutboxRelay):
        batches: list[int] = []  # noqa: RUF012 (one test's instance)

        async def publish_batch(self, producer: object, conn: object) -> int:
            done = await super().publish_batch(producer, conn)  # type: ignore[arg-type]
            if done:
                self.batches.append(done)
            return done

    relay = CountingRelay(core_engine, store(), topic, kafka, poll_interval=10.0, gather=0.5)
    async with running(relay):
        await asyncio.wait_for(relay.ready.wait(), timeout=30)
        started = time.monotonic()
        for seed in range(3):
            await write(core_engine, [f"s{seed}"], 1, seed=seed)
        await eventually(lambda: _zero(core_engine), timeout=30, interval=0.02)
        took = time.monotonic() - started
    assert relay.batches == [3]
    assert took < 3.0


async def _zero(engine: AsyncEngine) -> bool:
    return await pending(engine) == 0


async def test_cancelled_right_after_taking_the_lock_leaves_no_pooled_connection_holding_it(
    core_engine: AsyncEngine, kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A cancellation while the relay holds the lock (here: as it starts to lead) must not return
    a connection that still holds the relay lock to the pool: every later relay would wait for it
    forever."""
    entered = asyncio.Event()

    async def hang(self: object, *args: object) -> None:
        entered.set()
        await asyncio.sleep(3600)

    monkeypatch.setattr(OutboxRelay, "_lead", hang)
    relay = OutboxRelay(core_engine, store(), topic, kafka, poll_interval=0.1)
    task = asyncio.create_task(relay.run(asyncio.Event()))
    await asyncio.wait_for(entered.wait(), timeout=30)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    monkeypatch.undo()

    async with core_engine.connect() as conn:
        held = await conn.scalar(
            sa.text(
                "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND a.datname = current_database()"
            )
        )
    assert held == 0, "a pooled connection still holds the relay's advisory lock"
    # And a new relay becomes leader and publishes.
    successor = OutboxRelay(core_engine, store(), topic, kafka, poll_interval=0.1)
    async with running(successor):
        await asyncio.wait_for(successor.ready.wait(), timeout=30)
