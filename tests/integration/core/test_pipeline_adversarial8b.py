"""Review 8b: consumer fetch batching (fetch_min_bytes / fetch_max_wait_ms) and the relay's
linger-0 producer, on the real broker and database.

Does the configuration reach aiokafka; do a stop and a partition handover stay prompt with
64 KiB / 250 ms fetches; is every event applied once and in stream order when a second
member joins the group mid-stream; does the relay keep per-aggregate order with many
concurrent writers while its (private) broker restarts.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

import shared.consumer as consumer_module
from services.claims.app import build_runtime as claims_runtime
from shared.consumer import KafkaConsumerLoop
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer
from shared.kafka import ensure_topics
from shared.relay import OutboxRelay
from shared.unit_of_work import UnitOfWork
from tests.integration.claims.conftest import claims_settings
from tests.integration.core.test_consumer import LOG_DDL, envelope
from tests.integration.core.test_relay import by_stream, drained, store, write
from tests.kafka_broker import PrivateKafka
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(core_engine: AsyncEngine) -> AsyncEngine:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text(LOG_DDL))
    return core_engine


async def record(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    """Append (stream, n) to the log (no poison value, unlike test_consumer's)."""
    await uow.conn.execute(
        sa.text("INSERT INTO applied (stream_id, n) VALUES (:s, :n)"),
        {"s": envelope.aggregate_id, "n": envelope.data["n"]},
    )


def loop_for(engine: AsyncEngine, kafka: str, topic: str, group: str, **kw: Any) -> KafkaConsumerLoop:
    inbox = InboxConsumer("log", engine, EventStore("downstream", {}), {"Counted": record})  # type: ignore[arg-type]
    return KafkaConsumerLoop(inbox, kafka, topic, group, retry_backoff=0.01, max_backoff=0.05, **kw)


@contextlib.asynccontextmanager
async def running(loop: KafkaConsumerLoop) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def applied_rows(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT stream_id, n FROM applied ORDER BY seq"))
        return [(str(s), int(n)) for s, n in rows]


async def test_the_fetch_settings_reach_aiokafkas_fetcher(
    engine: AsyncEngine, kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[AIOKafkaConsumer] = []

    class Recording(AIOKafkaConsumer):  # type: ignore[misc]
        def __init__(self, *a: Any, **kw: Any) -> None:
            super().__init__(*a, **kw)
            made.append(self)

    monkeypatch.setattr(consumer_module, "AIOKafkaConsumer", Recording)
    await ensure_topics(kafka, [topic])
    loop = loop_for(engine, kafka, topic, f"g.{topic}", fetch_min_bytes=65536, fetch_wait_ms=250)
    async with running(loop):
        await asyncio.wait_for(loop.assigned.wait(), 30)
        fetcher = made[-1]._fetcher
        assert (fetcher._fetch_min_bytes, fetcher._fetch_max_wait_ms) == (65536, 250)


def test_claims_coverage_is_the_20_ms_reaction_path(database_url: str, kafka: str) -> None:
    settings = claims_settings(database_url, kafka, "t.m", "t.c")
    [sub] = claims_runtime(settings).subscriptions
    assert (sub.loop.fetch_min_bytes, sub.loop.fetch_wait_ms) == (64 * 1024, 20)


async def test_a_stop_during_a_250_ms_fetch_wait_returns_promptly(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """A trickle (one small event every 50 ms never fills 64 KiB): every fetch waits the whole
    250 ms. Stop must still end ``run`` well within a second, with everything applied kept."""
    await ensure_topics(kafka, [topic])
    loop = loop_for(engine, kafka, topic, f"g.{topic}", fetch_min_bytes=65536, fetch_wait_ms=250)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        await asyncio.wait_for(loop.assigned.wait(), 30)
        for n in range(1, 21):
            env = envelope("s", n, n)
            await producer.send_and_wait(
                topic, env.to_bytes(), key=env.kafka_key(), headers=env.kafka_headers()
            )
            await asyncio.sleep(0.05)
        await eventually(lambda: _count_at_least(engine, 20), timeout=10)
        started = time.monotonic()
        stop.set()
        await asyncio.wait_for(task, timeout=10)
        took = time.monotonic() - started
    finally:
        stop.set()
        await producer.stop()
    assert took < 1.5, f"stop took {took:.2f}s"
    assert [n for _, n in await applied_rows(engine)] == list(range(1, 21))


async def _count_at_least(engine: AsyncEngine, n: int) -> bool:
    return len(await applied_rows(engine)) >= n


async def test_a_second_member_joining_mid_stream_gets_partitions_promptly_and_nothing_is_lost_or_reordered(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """Three partitions, 30 streams, 300 events trickled over ~6 s. Consumer A alone, then B
    joins (both 64 KiB / 250 ms). B must be assigned within the rebalance's few seconds, and the
    log must hold every (stream, n) exactly once, in version order per stream."""
    await ensure_topics(kafka, [topic], partitions=3)
    group = f"g.{topic}"
    a = loop_for(engine, kafka, topic, group, fetch_min_bytes=65536, fetch_wait_ms=250)
    b = loop_for(engine, kafka, topic, group, fetch_min_bytes=65536, fetch_wait_ms=250)
    streams = [f"s{i}" for i in range(30)]
    versions = dict.fromkeys(streams, 0)
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    rnd = random.Random(7)

    async def trickle(count: int) -> None:
        for _ in range(count):
            s = rnd.choice(streams)
            versions[s] += 1
            env = envelope(s, versions[s], versions[s])
            await producer.send_and_wait(
                topic, env.to_bytes(), key=env.kafka_key(), headers=env.kafka_headers()
            )
            await asyncio.sleep(0.02)

    try:
        async with running(a):
            await asyncio.wait_for(a.assigned.wait(), 30)
            await trickle(100)
            async with running(b):
                joined = time.monotonic()
                sending = asyncio.create_task(trickle(200))
                await asyncio.wait_for(b.assigned.wait(), 20)
                handover = time.monotonic() - joined
                await asyncio.wait_for(sending, 60)
                await eventually(lambda: _count_at_least(engine, 300), timeout=60)
                await asyncio.sleep(1.0)
    finally:
        await producer.stop()
    rows = await applied_rows(engine)
    assert len(rows) == 300 and len(set(rows)) == 300, "each event applied exactly once"
    for s in streams:
        assert [n for st, n in rows if st == s] == list(range(1, versions[s] + 1)), s
    assert handover < 10, f"B waited {handover:.1f}s for partitions"


async def test_relay_with_linger_0_keeps_stream_order_across_a_broker_restart_under_8_writers(
    core_engine: AsyncEngine, topic: str
) -> None:
    """Eight writers append 1200 events on 40 streams while the relay's private broker is
    stopped and started again. Every event arrives; per stream the first occurrences of the
    versions are in order (duplicates after the restart are allowed, reordering is not)."""
    broker = PrivateKafka()
    broker.start()
    try:
        relay = OutboxRelay(
            core_engine, store(), topic, broker.bootstrap, batch_size=100, poll_interval=0.2, max_backoff=1.0
        )
        streams = [str(uuid.uuid4()) for _ in range(40)]
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            await eventually(lambda: _ready(relay), timeout=60)
            writers = asyncio.gather(*(write(core_engine, streams, 150, seed=100 + i) for i in range(8)))
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.stop)
            await asyncio.sleep(1.0)
            await asyncio.to_thread(broker.start)
            await asyncio.wait_for(writers, 120)
            await eventually(lambda: drained(core_engine), timeout=90)
        finally:
            stop.set()
            await asyncio.wait_for(task, timeout=30)
        received = await read_topic(broker.bootstrap, topic, expect=1200, timeout=60)
    finally:
        broker.close()
    assert len({r.headers["event_id"] for r in received}) == 1200
    for stream, versions in by_stream(received).items():
        firsts = list(dict.fromkeys(versions))
        assert firsts == sorted(firsts), f"stream {stream} out of order"
        assert firsts == list(range(1, len(firsts) + 1)), f"stream {stream} has a gap"


async def _ready(relay: OutboxRelay) -> bool:
    return relay.ready.is_set()


async def test_a_parked_event_failing_on_release_leaves_no_memo_behind(core_engine: AsyncEngine) -> None:
    """Review 8b's weak spot 2, fixed: a parked event released in a savepoint that fills the
    unit of work's memo and then fails is rolled back, and so is what it memoised. A later
    event of the same batch must not read it (claims' catalogue lives in that memo)."""
    from shared.eventstore import EventStore
    from shared.inbox import InboxConsumer
    from tests.integration.core.test_consumer import envelope

    seen: list[object] = []

    async def poisoned(uow: UnitOfWork, env: object) -> None:
        uow.memo["catalogue"] = "from a rolled-back savepoint"
        raise ValueError("fails when released")

    async def noop(uow: UnitOfWork, env: object) -> None:
        return None

    async def reader(uow: UnitOfWork, env: object) -> None:
        seen.append(uow.memo.get("catalogue"))

    from tests.integration.core.sample import registry

    inbox = InboxConsumer(
        "memo",
        core_engine,
        EventStore("downstream", registry),
        {"Poison": poisoned, "Noop": noop, "Read": reader},
    )
    await inbox.apply([envelope("s", 2, 2, "Poison")])  # parked: v1 not applied yet
    result = await inbox.apply([envelope("s", 1, 1, "Noop"), envelope("t", 1, 1, "Read")])
    assert [type(exc) for _, exc in result.dead_letters] == [ValueError]
    assert seen == [None]
