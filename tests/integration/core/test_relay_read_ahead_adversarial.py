"""Adversarial review of the relay's read-ahead (commit fae50d0): the next batch read on the
leader's session while the last one is sent and acknowledged.

Each test either documents a defect (it fails on the code it was written against, and says so in
its docstring) or confirms a guarantee that held under attack. Real PostgreSQL and the real broker.
A "slow read-ahead" is the relay's own ``_PENDING`` with a one-off ``pg_sleep`` that runs only
when ``$3`` (the positions in flight) is not empty, i.e. only for a read-ahead: it keeps that
statement in flight on the server for as long as a test needs.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
import warnings
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaTimeoutError, MessageSizeTooLargeError
from sqlalchemy.ext.asyncio import AsyncEngine

import shared.relay as relay_module
from shared import held as ops
from shared.eventstore import EventStore
from shared.kafka import reliable_producer
from shared.relay import _PENDING, OutboxRelay, relay_session_settings
from shared.tables import outbox, outbox_held
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import Renamed, registry
from tests.integration.core.test_relay_plan import FILL, assert_index_ordered, nodes
from tests.kafka_broker import REPO
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


async def fill(engine: AsyncEngine, count: int, streams: int) -> None:
    """``count`` events over ``streams`` streams ``s0``.. (versions in position order), queued."""
    async with engine.begin() as conn:
        start = int(await conn.scalar(sa.text("SELECT coalesce(max(position), 0) FROM events")) or 0)
        await conn.execute(
            sa.text(
                "INSERT INTO events (event_id, stream_type, stream_id, version, event_type, schema_version,"
                " occurred_at, correlation_id, data)"
                " SELECT gen_random_uuid(), 'Counter', 's' || (g % :n), g / :n + 1, 'Counted', 1, now(),"
                " gen_random_uuid(), '{\"n\": 1}'::jsonb FROM generate_series(0, :count - 1) AS g"
            ),
            {"n": streams, "count": count},
        )
        await conn.execute(
            sa.text("INSERT INTO outbox SELECT position FROM events WHERE position > :start"),
            {"start": start},
        )


async def queued(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(outbox)) or 0)


async def in_outbox(engine: AsyncEngine, positions: list[int]) -> int:
    async with engine.connect() as conn:
        query = sa.select(sa.func.count()).select_from(outbox).where(outbox.c.position.in_(positions))
        return int(await conn.scalar(query) or 0)


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield task
    finally:
        stop.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(task, timeout=30)


def envelopes(received: list[Received]) -> list[tuple[str, int]]:
    out = []
    for r in received:
        env = json.loads(r.value)
        out.append((env["aggregate_id"], env["aggregate_version"]))
    return out


def by_stream(received: list[Received]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for stream, version in envelopes(received):
        out.setdefault(stream, []).append(version)
    return out


def assert_first_deliveries_in_order(received: list[Received]) -> None:
    for stream, versions in by_stream(received).items():
        firsts = list(dict.fromkeys(versions))
        assert firsts == list(range(1, len(firsts) + 1)), f"stream {stream}: {versions}"


class Producer:
    """A real producer; ``hook(n, stream)`` runs before its n-th send (1-based); from its
    ``fail_at``-th send on, deliveries fail (transient, nothing reaches the broker)."""

    def __init__(
        self,
        bootstrap: str,
        *,
        hook: Callable[[int, str], Awaitable[None]] | None = None,
        fail_at: int = 0,
        refuse: Callable[[str], bool] | None = None,
    ) -> None:
        self._producer = reliable_producer(bootstrap, linger_ms=0)
        self._hook = hook
        self._fail_at = fail_at
        self._refuse = refuse
        self.sends = 0

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def send(self, topic: str, **kwargs: Any) -> asyncio.Future[object]:
        self.sends += 1
        stream = kwargs["key"].decode()
        if self._hook is not None:
            await self._hook(self.sends, stream)
        if self._refuse is not None and self._refuse(stream):
            raise MessageSizeTooLargeError("injected: refused by send()")
        if self._fail_at and self.sends >= self._fail_at:
            failed: asyncio.Future[object] = asyncio.get_running_loop().create_future()
            failed.set_exception(KafkaTimeoutError("injected"))
            return failed
        future: asyncio.Future[object] = await self._producer.send(topic, **kwargs)
        return future


class WatchedRelay(OutboxRelay):
    """Counts the batches it took from a read-ahead, and checks each such batch is still wholly in
    the outbox when it is used (a read-ahead must never send rows published since)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.read_ahead_batches = 0
        self.stale: list[list[int]] = []
        self.leaderships = 0

    async def _pump(self, producer: AIOKafkaProducer, conn: Any, stop: asyncio.Event) -> None:
        self.leaderships += 1
        await super()._pump(producer, conn, stop)

    async def publish_batch(self, producer: AIOKafkaProducer, conn: Any) -> int:
        if self._ahead:
            self.read_ahead_batches += 1
            positions = [r["position"] for r in self._ahead]
            if await in_outbox(self.engine, positions) != len(positions):
                self.stale.append(positions)
        return await super().publish_batch(producer, conn)


def slow_read_ahead(seconds: float) -> str:
    """``_PENDING`` whose read-ahead (non-empty ``$3``) first sleeps ``seconds`` on the server."""
    anchor = "WHERE o.position <> ALL($3::bigint[])"
    assert anchor in _PENDING
    return _PENDING.replace(
        anchor, f"{anchor}\n  AND (cardinality($3::bigint[]) = 0 OR (SELECT pg_sleep({seconds})::text) = '')"
    )


async def sleeping_backends(engine: AsyncEngine) -> list[int]:
    """Backends of this database running the slow read-ahead right now: asleep in it, not just
    preparing it (every relay session prepares it before it takes the lock, follower or not)."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND state = 'active'"
                " AND wait_event = 'PgSleep' AND query LIKE '%pg_sleep%' AND pid <> pg_backend_pid()"
            )
        )
        return [int(r[0]) for r in rows]


async def advisory_holders(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(
            await conn.scalar(
                sa.text(
                    "SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
                    " WHERE l.locktype = 'advisory' AND a.datname = current_database()"
                )
            )
            or 0
        )


@pytest.fixture(autouse=True)
async def no_loop_reports() -> AsyncIterator[None]:
    """Every test here: nothing reported to the loop's exception handler ('Task exception was
    never retrieved', 'Task was destroyed but it is pending', ...)."""
    loop = asyncio.get_running_loop()
    reports: list[str] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(str(context.get("message"))))
    try:
        yield
        await asyncio.sleep(0.1)
        gc.collect()
        await asyncio.sleep(0)
    finally:
        loop.set_exception_handler(previous)
    assert reports == []


# --- Defect: a wake-up that arrives while a batch is acknowledged is erased ----------------------


async def test_a_commit_during_a_publish_is_relayed_at_once_when_the_next_batch_was_read_ahead(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """DEFECT (fails on fae50d0). ``_pump`` clears ``_wake`` before each ``publish_batch`` on the
    promise that the outbox is read *after* the clear (see its comment, and test_relay.py's
    ``test_a_commit_during_a_publish_is_relayed_at_once_not_after_a_poll_interval``). A batch
    taken from ``_ahead`` was read *before* it, while the previous batch was acknowledged: a
    commit landing in that window is in neither batch, and its NOTIFY is erased. When the batch
    read ahead is short, the relay then sleeps a whole poll interval with that event queued.

    15 queued, batch 10: the first batch is full, the read-ahead gets the other 5. While the first
    batch is being sent (the read-ahead already done), one more event commits. It must go out at
    once, not after the 8 s poll interval."""
    await fill(core_engine, 15, 5)
    committed_at: list[float] = []

    async def hook(n: int, stream: str) -> None:
        if n == 10:  # the last row of the first (full) batch; its read-ahead is over by now
            await asyncio.sleep(0.3)
            await append(core_engine, "late", 0, "late")
            committed_at.append(time.monotonic())
            await asyncio.sleep(0.3)  # its NOTIFY reaches the relay before this batch ends

    relay = WatchedRelay(
        core_engine,
        store(),
        topic,
        kafka,
        batch_size=10,
        poll_interval=8.0,
        producer_factory=lambda: Producer(kafka, hook=hook),
    )
    async with running(relay):
        await eventually(lambda: _is(lambda: len(committed_at) == 1), timeout=30)
        with contextlib.suppress(AssertionError):
            await eventually(lambda: _queued_is(core_engine, 0), timeout=4.0, interval=0.02)
        took = time.monotonic() - committed_at[0]
    assert relay.read_ahead_batches >= 1, "the scenario needs the second batch read ahead"
    assert took < 3.0, f"the late event waited {took:.1f}s (poll interval 8 s) or more: its wake-up was lost"


# --- Guarantees that held -----------------------------------------------------------------------


async def test_a_late_commit_during_a_long_backlog_goes_out_within_two_batches_not_at_the_end(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """No starvation: a transaction takes the lowest position, 20,000 events queue above it and
    are relayed in full batches of 20, always read ahead. When it commits mid-backlog, the next
    read-ahead (ordered from the head of the outbox) must carry it: it is sent within the current
    batch, the one read ahead and the next, not after the backlog drains."""
    sends: list[str] = []
    at_commit: list[int] = []

    async def hook(n: int, stream: str) -> None:
        sends.append(stream)

    relay = WatchedRelay(
        core_engine,
        store(),
        topic,
        kafka,
        batch_size=20,
        poll_interval=0.2,
        producer_factory=lambda: Producer(kafka, hook=hook),
    )
    async with UnitOfWork(core_engine, store()) as late:
        envelope = late.store.envelopes(
            "Counter", "late", 0, [Renamed(new_name="late", reason="t")], correlation_id=uuid.uuid4()
        )
        await late.store.append(late.conn, envelope)
        await fill(core_engine, 20_000, 200)
        async with running(relay):
            await eventually(lambda: _is(lambda: relay.read_ahead_batches >= 20), timeout=30, interval=0.005)
            before_commit = len(sends)
            await late.commit()
            at_commit.append(len(sends))  # from here on the late row is visible to every read
            await eventually(lambda: _is(lambda: "late" in sends), timeout=20, interval=0.005)
            assert await queued(core_engine) > 5_000, "sent mid-backlog"
    assert relay.stale == []
    waited = sends.index("late") - at_commit[0]
    during = at_commit[0] - before_commit
    assert waited < 3 * 20, f"{waited} other rows were sent first ({during} more while it committed)"


async def test_the_read_ahead_of_5000_rows_keeps_the_index_walk_and_its_cost(
    core_engine: AsyncEngine, database_url: str
) -> None:
    """Under the relay session's settings (custom plans) ``<> ALL($3)`` with 5,000 positions is a
    hashed filter on the outbox walk: the same plan as the plain fetch, the in-flight rows never
    looked up in ``events``, and not dearer than a fetch (a linear ``<> ALL``, as with a generic
    plan, costs several times more: 5,000 x 10,000 comparisons)."""
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        for name, value in relay_session_settings(5.0).items():
            await conn.execute(f"SET {name} = '{value}'")
        await conn.execute(FILL, 0, 30_000)
        await conn.execute("INSERT INTO outbox SELECT position FROM events")
        in_flight = list(range(1, 5001))
        for analyzed in (False, True):
            if analyzed:
                await conn.execute("ANALYZE events")
                await conn.execute("ANALYZE outbox")
            timings = {}
            for label, arg in (("fetch", []), ("ahead", in_flight)):
                raw = await conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {_PENDING}", "p", 5000, arg)
                plan = json.loads(raw)[0]
                assert_index_ordered(list(nodes(plan["Plan"])))
                events_scan = next(n for n in nodes(plan["Plan"]) if n.get("Relation Name") == "events")
                assert events_scan["Actual Rows"] * events_scan["Actual Loops"] == 5000
                best = float("inf")
                for _ in range(3):
                    started = time.perf_counter()
                    rows = await conn.fetch(_PENDING, "p", 5000, arg)
                    best = min(best, time.perf_counter() - started)
                timings[label] = best
                assert rows[0]["position"] == (1 if not arg else 5001) and len(rows) == 5000
            assert timings["ahead"] < 2 * timings["fetch"] + 0.05, timings
    finally:
        await conn.close()


async def test_a_delivery_failure_while_the_read_ahead_is_in_flight_leaves_the_session_usable(
    core_engine: AsyncEngine, kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch, caplog: Any
) -> None:
    """The read-ahead is still running on the server (slow) when deliveries fail from the 5th row
    of the first batch: it is cancelled at once (the relay does not wait for it), the same session
    then deletes the confirmed prefix (4 rows: had the cancel hit the DELETE, they would be sent
    twice), and nothing else went wrong on it."""
    monkeypatch.setattr(relay_module, "_PENDING", slow_read_ahead(3.0))
    caplog.set_level(logging.WARNING, logger="shared.relay")
    await fill(core_engine, 30, 3)
    failed_at: list[float] = []
    producers: list[Producer] = []

    async def hook(n: int, stream: str) -> None:
        if n == 5 and not failed_at:
            await eventually(lambda: sleeping_backends(core_engine), timeout=10, interval=0.01)
            failed_at.append(time.monotonic())

    def factory() -> Any:
        producers.append(Producer(kafka, hook=hook, fail_at=5) if not producers else Producer(kafka))
        return producers[-1]

    relay = WatchedRelay(
        core_engine,
        store(),
        topic,
        kafka,
        batch_size=10,
        poll_interval=0.2,
        max_backoff=0.2,
        producer_factory=factory,
    )
    async with running(relay):
        await eventually(lambda: _queued_is(core_engine, 26), timeout=30, interval=0.01)
        took = time.monotonic() - failed_at[0]
        # The rest at the same slow pace: a session runs the statements it prepared when it began.
        await eventually(lambda: _queued_is(core_engine, 0), timeout=60)
    assert took < 1.5, f"the failed batch waited {took:.1f}s for a read-ahead it threw away"
    received = await read_topic(kafka, topic, expect=30, timeout=30)
    assert len(received) == 30, "each once: the prefix was deleted on the session the cancel left"
    assert_first_deliveries_in_order(received)
    problems = [
        r.getMessage()
        for r in caplog.records
        if r.name == "shared.relay" and "injected" not in r.getMessage()
    ]
    assert problems == []


async def test_cancelled_while_the_read_ahead_is_in_flight_ends_at_once_and_cleanly(
    core_engine: AsyncEngine, kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``run`` cancelled (a shutdown) while the read-ahead is in flight: it returns at once, with
    no 'exception was never retrieved' / 'never awaited' report, no advisory lock left behind, and
    a successor publishes everything (duplicates of the unconfirmed batch allowed)."""
    monkeypatch.setattr(relay_module, "_PENDING", slow_read_ahead(3.0))
    await fill(core_engine, 30, 3)
    loop = asyncio.get_running_loop()
    reports: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: reports.append(context))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            relay = OutboxRelay(core_engine, store(), topic, kafka, batch_size=10, poll_interval=0.2)
            task = asyncio.create_task(relay.run(asyncio.Event()))
            await eventually(lambda: sleeping_backends(core_engine), timeout=30, interval=0.01)
            started = time.monotonic()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait_for(task, timeout=10)
            took = time.monotonic() - started
            del relay, task
            await asyncio.sleep(0.2)
            gc.collect()
            await asyncio.sleep(0.1)
    finally:
        loop.set_exception_handler(previous)
    assert took < 1.0, f"cancellation took {took:.1f}s"
    assert reports == [], reports
    assert [str(w.message) for w in caught if "never" in str(w.message)] == []
    await eventually(lambda: _is_zero(advisory_holders(core_engine)), timeout=5)
    monkeypatch.setattr(relay_module, "_PENDING", _PENDING)
    successor = OutboxRelay(core_engine, store(), topic, kafka, batch_size=10, poll_interval=0.2)
    async with running(successor):
        await eventually(lambda: _queued_is(core_engine, 0), timeout=30)
    received = await read_topic(kafka, topic, expect=30, timeout=30)
    assert len({r.headers["event_id"] for r in received}) == 30
    assert_first_deliveries_in_order(received)


async def test_the_heartbeat_waiting_behind_a_slow_read_ahead_keeps_the_leadership(
    core_engine: AsyncEngine, kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lease 2 s (heartbeat every 0.5 s), each read-ahead 1.2 s on the server, a follower fencing
    silent leaders: the heartbeat queues behind the read-ahead on the session lock, the session is
    never silent, and the one leadership relays every batch."""
    monkeypatch.setattr(relay_module, "_PENDING", slow_read_ahead(1.2))
    await fill(core_engine, 30, 3)
    relays = [
        WatchedRelay(core_engine, store(), topic, kafka, batch_size=10, poll_interval=0.1, lease=2.0)
        for _ in range(2)
    ]
    async with running(relays[0]):
        await asyncio.wait_for(relays[0].ready.wait(), timeout=30)
        async with running(relays[1]):
            await eventually(lambda: _queued_is(core_engine, 0), timeout=30)
    assert [r.leaderships for r in relays] == [1, 0]
    assert relays[0].read_ahead_batches >= 2
    received = await read_topic(kafka, topic, expect=30, timeout=20)
    assert len(received) == 30


async def test_stop_during_a_slow_read_ahead_sends_nothing_it_read(
    core_engine: AsyncEngine, kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stop set while the read-ahead is in flight: the batch being acknowledged is finished (10
    rows confirmed and deleted) and what was read ahead is never sent."""
    monkeypatch.setattr(relay_module, "_PENDING", slow_read_ahead(1.5))
    await fill(core_engine, 30, 3)
    relay = WatchedRelay(core_engine, store(), topic, kafka, batch_size=10, poll_interval=0.2)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    await eventually(lambda: sleeping_backends(core_engine), timeout=30, interval=0.01)
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(task, timeout=10)
    took = time.monotonic() - started
    assert took < 3.0
    assert await queued(core_engine) == 20
    received = await read_topic(kafka, topic, expect=10, timeout=10)
    assert len(received) == 10, "only the first batch: nothing read ahead went out"


async def test_a_leader_killed_during_its_read_ahead_hands_over_and_no_stale_read_ahead_is_sent(
    core_engine: AsyncEngine, kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two relays. The leader's session is terminated while its read-ahead is in flight; the other
    takes over and publishes; its session is killed the same way, the first takes back over. No
    read-ahead is ever used once its rows left the outbox, nothing is lost, and what each stream
    delivers first is in order (re-sends of unconfirmed batches are allowed)."""
    monkeypatch.setattr(relay_module, "_PENDING", slow_read_ahead(1.0))
    await fill(core_engine, 400, 8)
    relays = [
        WatchedRelay(core_engine, store(), topic, kafka, batch_size=20, poll_interval=0.1, max_backoff=0.3)
        for _ in range(2)
    ]
    async with running(relays[0]), running(relays[1]):
        for _ in range(2):
            before = await queued(core_engine)
            [pid] = await eventually(lambda: sleeping_backends(core_engine), timeout=30, interval=0.01)
            async with core_engine.connect() as conn:
                await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            await eventually(lambda n=before: _queued_below(core_engine, n), timeout=30, interval=0.01)
        # Still slow: a session runs the statements it prepared when it began.
        await eventually(lambda: _queued_is(core_engine, 0), timeout=90)
    assert relays[0].stale == [] and relays[1].stale == []
    assert relays[0].leaderships >= 1 and relays[1].leaderships >= 1, "a takeover happened"
    assert relays[0].leaderships + relays[1].leaderships >= 3, "two ended, a third publishes"
    received = await read_topic(kafka, topic, expect=400, timeout=30)
    assert len({r.headers["event_id"] for r in received}) == 400
    assert_first_deliveries_in_order(received)


async def test_a_broker_refusal_on_the_delivery_future_in_a_full_batch_holds_the_stream(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """The broker (not send()) refuses a record of a full batch; the refused stream's next event
    was read ahead with the following batch. It must not be sent; the stream is held after the
    isolating pass and every other stream gets everything, in order."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        config = {"max.message.bytes": "20000"}
        await admin.create_topics(
            [NewTopic(topic, num_partitions=1, replication_factor=1, topic_configs=config)]
        )
    finally:
        await admin.close()
    a, b, big = (str(uuid.uuid4()) for _ in range(3))
    plan = [(a, "a"), (b, "b"), (big, "y" * 50_000), (a, "a"), (b, "b")]  # batch 1 (full)
    plan += [(big, "big2"), (a, "a"), (b, "b"), (a, "a"), (b, "b")]  # read ahead
    plan += [(a, "a"), (b, "b"), (a, "a")]
    versions: dict[str, int] = {}
    for stream, name in plan:
        await append(core_engine, stream, versions.get(stream, 0), name)
        versions[stream] = versions.get(stream, 0) + 1
    relay = WatchedRelay(core_engine, store(), topic, kafka, batch_size=5, poll_interval=0.2, max_backoff=0.3)
    async with running(relay):
        await eventually(lambda: _queued_is(core_engine, 2), timeout=30)
        received = await read_topic(kafka, topic, expect=11, timeout=10)
    assert relay.stale == []
    assert big not in by_stream(received), "big2 must not overtake the refused big1"
    assert set(by_stream(received)) == {a, b}
    assert_first_deliveries_in_order(received)
    assert {s: len(set(v)) for s, v in by_stream(received).items()} == {a: 6, b: 5}
    async with core_engine.connect() as conn:
        assert list(await conn.scalars(sa.select(outbox_held.c.stream_id))) == [big]


async def test_ops_held_release_racing_a_read_ahead_sends_the_stream_once_and_in_order(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """A stream refused by send() is held; while later full batches flow (read ahead), the operator
    releases it (the refusal is gone), the release landing while a read-ahead is being started.
    The stream's events, below the rows read ahead, must all go out once and in order."""
    h = str(uuid.uuid4())
    others = [str(uuid.uuid4()) for _ in range(5)]
    refusing = [True]
    layout = [others[i % 5] for i in range(80)]
    layout[2], layout[7], layout[45] = h, h, h
    versions: dict[str, int] = {}
    for stream in layout:
        await append(core_engine, stream, versions.get(stream, 0), "n")
        versions[stream] = versions.get(stream, 0) + 1

    async def hook(n: int, stream: str) -> None:
        if n == 31 and refusing[0]:  # first row of the fourth batch: a read-ahead was just started
            refusing[0] = False
            assert await ops.release(core_engine, h) is True

    relay = WatchedRelay(
        core_engine,
        store(),
        topic,
        kafka,
        batch_size=10,
        poll_interval=0.2,
        producer_factory=lambda: Producer(kafka, hook=hook, refuse=lambda s: s == h and refusing[0]),
    )
    async with running(relay):
        await eventually(lambda: _queued_is(core_engine, 0), timeout=30)
    received = await read_topic(kafka, topic, expect=80, timeout=20)
    assert relay.stale == []
    assert by_stream(received)[h] == [1, 2, 3]
    assert all(by_stream(received)[s] == list(range(1, versions[s] + 1)) for s in others)
    assert len(received) == 80, "each once (the refused record never reached the broker)"


async def test_sigkilled_twice_mid_stream_with_read_ahead_loses_nothing_and_keeps_order(
    core_engine: AsyncEngine, database_url: str, kafka: str, topic: str
) -> None:
    """The relay as a process, batch 100 (every batch read ahead), SIGKILLed twice mid-backlog
    and restarted: every event delivered, what each stream delivers first in order."""
    await fill(core_engine, 6000, 40)

    def start() -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [sys.executable, "-m", "tests.integration.core.relay_process", database_url, topic, kafka, "100"],
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    proc = start()
    try:
        for threshold in (4500, 2500):
            deadline = time.monotonic() + 30
            while await queued(core_engine) > threshold and time.monotonic() < deadline:
                await asyncio.sleep(0.005)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=10)
            assert 0 < await queued(core_engine) < 6000, "killed mid-stream"
            proc = start()
        await eventually(lambda: _queued_is(core_engine, 0), timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    received = await read_topic(kafka, topic, expect=6000, timeout=30)
    assert len({r.headers["event_id"] for r in received}) == 6000
    assert_first_deliveries_in_order(received)


async def _is(check: Callable[[], bool]) -> bool:
    return check()


async def _is_zero(value: Awaitable[int]) -> bool:
    return await value == 0


async def _queued_is(engine: AsyncEngine, n: int) -> bool:
    return await queued(engine) == n


async def _queued_below(engine: AsyncEngine, n: int) -> bool:
    return await queued(engine) < n
