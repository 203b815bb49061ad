"""Core benchmark: our event store and outbox relay against their raw limits and a peer library.

Run with ``python -m bench.core`` (``make bench-core``). Everything happens in one process on one
client connection: fresh databases on the given PostgreSQL (dropped at the end), fresh topics on
the given Kafka (deleted at the end). See bench/README.md for what each figure means.

Contenders
- ours: shared.unit_of_work.UnitOfWork + shared.eventstore.EventStore, shared.relay.OutboxRelay;
- raw: plain asyncpg writing the very same rows (schema from shared.migrations.create_core_tables,
  NOTIFY trigger included) and a plain aiokafka producer sending the very same messages;
- eventsourcing: the eventsourcing library's PostgresApplicationRecorder (synchronous psycopg 3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import TopicPartition
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.aggregate import Aggregate, applies
from shared.events import DomainEvent, EventRegistry
from shared.eventstore import EventStore
from shared.kafka import ensure_topics
from shared.migrations import create_core_tables
from shared.relay import OutboxRelay
from shared.tables import events, outbox
from shared.unit_of_work import UnitOfWork

DEFAULT_ADMIN_URL = "postgresql://union_admin:union-admin-local@127.0.0.1:5432/postgres"
DEFAULT_KAFKA = "127.0.0.1:9092"

APPEND_TARGET = 0.50  # ours >= 50 % of raw asyncpg
RELAY_TARGET = 0.70  # ours >= 70 % of raw aiokafka
WORKLOADS = ("append1", "batch", "load1", "relay")
KAFKA_PARTITIONS = 3  # shared.kafka.ensure_topics' default, used for both relay topics

#: The producer settings of shared.kafka.reliable_producer, spelled out for the raw contender so
#: that "raw" differs from "ours" only by what the relay does around the producer.
RAW_PRODUCER_CONFIG: dict[str, Any] = {
    "acks": "all",
    "enable_idempotence": True,
    "linger_ms": 5,
    "request_timeout_ms": 10_000,
    "max_batch_size": 256 * 1024,
}


# --------------------------------------------------------------------------- domain under test


class Counted(DomainEvent):
    n: int
    note: str = ""


registry = EventRegistry([Counted])


class Counter(Aggregate[str]):
    """Mirror of tests/integration/core/sample.py's Counter, with a padding field for realism."""

    stream_type = "Counter"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.total = 0

    def count(self, n: int, note: str) -> None:
        self._raise(Counted(n=n, note=note))

    @applies(Counted)
    def _counted(self, event: Counted) -> None:
        self.total += event.n


ES_TOPIC = "bench.core:Counter.Counted"  # what eventsourcing would store as the event's topic


# --------------------------------------------------------------------------- measurements


@dataclass
class Result:
    events: int
    seconds: float
    latencies: list[float] = field(default_factory=list)  # per command (or per batch), seconds
    capped: bool = False

    @property
    def rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


@dataclass
class Series:
    results: list[Result] = field(default_factory=list)

    @property
    def rate(self) -> float | None:
        """Median events/s over the timed rounds."""
        return statistics.median(r.rate for r in self.results) if self.results else None

    def describe(self) -> str:
        if not self.results:
            return "n/a"
        rounds = " ".join(f"{r.rate:,.0f}{'*' if r.capped else ''}" for r in self.results)
        lat = sorted(x for r in self.results for x in r.latencies)
        if not lat:
            return f"rounds ev/s: {rounds}"
        p50 = lat[len(lat) // 2] * 1000
        p99 = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000
        return f"rounds ev/s: {rounds} | per command p50 {p50:.2f} ms, p99 {p99:.2f} ms"


@dataclass(frozen=True)
class Plan:
    """What one timed run does: ``commands`` commands of ``per_command`` events, round-robin over
    ``streams`` (fresh ids per run)."""

    commands: int
    per_command: int
    streams: list[uuid.UUID]
    max_seconds: float

    @classmethod
    def make(cls, events_total: int, per_command: int, streams: int, max_seconds: float) -> Plan:
        commands = max(1, events_total // per_command)
        return cls(commands, per_command, [uuid.uuid4() for _ in range(max(1, streams))], max_seconds)


AsyncOp = Callable[[str, int], Awaitable[None]]  # (stream id, current version) -> one command
SyncOp = Callable[[uuid.UUID, int], None]


async def drive_async(op: AsyncOp, plan: Plan) -> Result:
    ids = [str(s) for s in plan.streams]
    versions = [0] * len(ids)
    latencies: list[float] = []
    clock = time.perf_counter
    start = clock()
    deadline = start + plan.max_seconds
    done = 0
    capped = False
    for i in range(plan.commands):
        k = i % len(ids)
        t0 = clock()
        await op(ids[k], versions[k])
        t1 = clock()
        latencies.append(t1 - t0)
        versions[k] += plan.per_command
        done += 1
        if t1 > deadline:
            capped = done < plan.commands
            break
    return Result(done * plan.per_command, clock() - start, latencies, capped)


def drive_sync(op: SyncOp, plan: Plan) -> Result:
    ids = plan.streams
    versions = [0] * len(ids)
    latencies: list[float] = []
    clock = time.perf_counter
    start = clock()
    deadline = start + plan.max_seconds
    done = 0
    capped = False
    for i in range(plan.commands):
        k = i % len(ids)
        t0 = clock()
        op(ids[k], versions[k])
        t1 = clock()
        latencies.append(t1 - t0)
        versions[k] += plan.per_command
        done += 1
        if t1 > deadline:
            capped = done < plan.commands
            break
    return Result(done * plan.per_command, clock() - start, latencies, capped)


@dataclass
class Contender:
    name: str
    run: Callable[[Plan], Awaitable[Result]]
    reset: Callable[[], Awaitable[None]]
    stored: Callable[[], Awaitable[int]]  # rows written since the last reset (sanity check)


# --------------------------------------------------------------------------- ours


class Ours:
    """The production path: a UnitOfWork per command (pool checkout, BEGIN, append, COMMIT)."""

    def __init__(self, engine: AsyncEngine, note: str) -> None:
        self.engine = engine
        self.store = EventStore("bench-core", registry)
        self.note = note

    def append_only(self, per_command: int) -> AsyncOp:
        """The aggregate is already in memory (its version is known): build events, append, commit."""

        async def op(stream: str, version: int) -> None:
            agg = Counter(stream)
            agg.version = version
            for _ in range(per_command):
                agg.count(1, self.note)
            async with UnitOfWork(self.engine, self.store) as uow:
                await uow.save(agg)
                await uow.commit()

        return op

    def load_decide_append(self) -> AsyncOp:
        async def op(stream: str, _version: int) -> None:
            async with UnitOfWork(self.engine, self.store) as uow:
                agg = await uow.load(Counter, stream)
                agg.count(1, self.note)
                await uow.save(agg)
                await uow.commit()

        return op

    async def reset(self) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(sa.text("TRUNCATE events, outbox RESTART IDENTITY"))

    async def stored(self) -> int:
        async with self.engine.connect() as conn:
            return await _stored_rows(conn)


async def _stored_rows(conn: Any) -> int:
    n_events = await conn.scalar(sa.select(sa.func.count()).select_from(events))
    n_outbox = await conn.scalar(sa.select(sa.func.count()).select_from(outbox))
    if n_events != n_outbox:
        raise RuntimeError(f"events ({n_events}) and outbox ({n_outbox}) disagree")
    return int(n_events or 0)


# --------------------------------------------------------------------------- raw asyncpg

_EVENT_COLUMNS = (
    "event_id, stream_type, stream_id, version, event_type, schema_version, "
    "occurred_at, correlation_id, causation_id, data"
)
RAW_INSERT_ONE = f"""
WITH inserted AS (
    INSERT INTO events ({_EVENT_COLUMNS})
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
    RETURNING position
)
INSERT INTO outbox (position) SELECT position FROM inserted RETURNING position
"""
RAW_INSERT_MANY = f"""
WITH inserted AS (
    INSERT INTO events ({_EVENT_COLUMNS})
    SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],
                         $7::timestamptz[], $8::uuid[], $9::uuid[], $10::jsonb[])
    RETURNING position
)
INSERT INTO outbox (position) SELECT position FROM inserted RETURNING position
"""
RAW_SELECT_STREAM = "SELECT * FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version"


class Raw:
    """Plain asyncpg on one connection: the same rows, one explicit transaction per command."""

    def __init__(self, conn: asyncpg.Connection, note: str) -> None:
        self.conn = conn
        self.note = note

    def _rows(self, stream: str, version: int, count: int) -> list[tuple[Any, ...]]:
        now = datetime.now(UTC)
        correlation_id = uuid.uuid4()
        return [
            (
                uuid.uuid4(),
                "Counter",
                stream,
                version + i + 1,
                "Counted",
                1,
                now,
                correlation_id,
                None,
                json.dumps({"n": 1, "note": self.note}),
            )
            for i in range(count)
        ]

    def append_only(self, per_command: int) -> AsyncOp:
        conn = self.conn
        if per_command == 1:

            async def one(stream: str, version: int) -> None:
                (row,) = self._rows(stream, version, 1)
                async with conn.transaction():
                    await conn.fetch(RAW_INSERT_ONE, *row)

            return one

        async def many(stream: str, version: int) -> None:
            columns = list(zip(*self._rows(stream, version, per_command), strict=True))
            async with conn.transaction():
                await conn.fetch(RAW_INSERT_MANY, *columns)

        return many

    def load_decide_append(self) -> AsyncOp:
        conn = self.conn

        async def op(stream: str, _version: int) -> None:
            async with conn.transaction():
                history = await conn.fetch(RAW_SELECT_STREAM, stream, 0)
                total, version = 0, 0
                for row in history:
                    total += json.loads(row["data"])["n"]
                    version = row["version"]
                (new,) = self._rows(stream, version, 1)
                await conn.fetch(RAW_INSERT_ONE, *new)

        return op

    async def reset(self) -> None:
        await self.conn.execute("TRUNCATE events, outbox RESTART IDENTITY")

    async def stored(self) -> int:
        n_events = await self.conn.fetchval("SELECT count(*) FROM events")
        n_outbox = await self.conn.fetchval("SELECT count(*) FROM outbox")
        if n_events != n_outbox:
            raise RuntimeError(f"events ({n_events}) and outbox ({n_outbox}) disagree")
        return int(n_events)


# --------------------------------------------------------------------------- eventsourcing


class EventSourcingLib:
    """eventsourcing's PostgresApplicationRecorder, configured directly (library defaults:
    pool size 1, table lock + NOTIFY per insert, pipelined), synchronous, single client."""

    def __init__(self, url: str, note: str) -> None:
        from eventsourcing.persistence import StoredEvent
        from eventsourcing.postgres import PostgresApplicationRecorder, PostgresDatastore

        parts = urlsplit(url)
        self.datastore = PostgresDatastore(
            dbname=parts.path.lstrip("/"),
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            user=unquote(parts.username or ""),
            password=unquote(parts.password or ""),
        )
        self.recorder = PostgresApplicationRecorder(self.datastore)
        self.recorder.create_table()
        self.stored_event = StoredEvent
        self.note = note

    def _stored(self, stream: uuid.UUID, version: int, count: int) -> list[Any]:
        """What eventsourcing's mapper stores: the event's own state (timestamp + attributes)."""
        now = datetime.now(UTC).isoformat()
        return [
            self.stored_event(
                originator_id=stream,
                originator_version=version + i + 1,
                topic=ES_TOPIC,
                state=json.dumps({"timestamp": now, "n": 1, "note": self.note}).encode(),
            )
            for i in range(count)
        ]

    def append_only(self, per_command: int) -> SyncOp:
        def op(stream: uuid.UUID, version: int) -> None:
            self.recorder.insert_events(self._stored(stream, version, per_command))

        return op

    def load_decide_append(self) -> SyncOp:
        def op(stream: uuid.UUID, _version: int) -> None:
            history = self.recorder.select_events(stream)
            total, version = 0, 0
            for e in history:
                total += json.loads(e.state)["n"]
                version = e.originator_version
            self.recorder.insert_events(self._stored(stream, version, 1))

        return op

    def reset(self) -> None:
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("TRUNCATE stored_events RESTART IDENTITY")

    def stored(self) -> int:
        with self.datastore.transaction(commit=False) as curs:
            curs.execute("SELECT count(*) AS n FROM stored_events")
            row = curs.fetchone()
            return int(row["n"]) if row else 0

    def close(self) -> None:
        self.datastore.close()


# --------------------------------------------------------------------------- append workloads


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    per_command: int
    load: bool  # load + decide + append, instead of append only
    events: int  # per timed run
    streams: int  # written round-robin


def contenders_for(w: Workload, ours: Ours, raw: Raw, es: EventSourcingLib | None) -> list[Contender]:
    ours_op = ours.load_decide_append() if w.load else ours.append_only(w.per_command)
    raw_op = raw.load_decide_append() if w.load else raw.append_only(w.per_command)
    result = [
        Contender("ours", lambda p: drive_async(ours_op, p), ours.reset, ours.stored),
        Contender("raw", lambda p: drive_async(raw_op, p), raw.reset, raw.stored),
    ]
    if es is not None:
        lib = es
        es_op = lib.load_decide_append() if w.load else lib.append_only(w.per_command)
        result.append(
            Contender(
                "eventsourcing",
                lambda p: asyncio.to_thread(drive_sync, es_op, p),
                lambda: asyncio.to_thread(lib.reset),
                lambda: asyncio.to_thread(lib.stored),
            )
        )
    return result


async def measure_append(
    w: Workload, contenders: list[Contender], args: argparse.Namespace
) -> dict[str, Series]:
    series = {c.name: Series() for c in contenders}
    for c in contenders:  # warm-up: connections, prepared statements, code paths
        await c.reset()
        await c.run(Plan.make(args.warmup, w.per_command, w.streams, args.max_seconds))
    for r in range(args.rounds):
        shift = r % len(contenders)  # rotate the order so no one always runs first or last
        for c in contenders[shift:] + contenders[:shift]:
            await c.reset()
            result = await c.run(Plan.make(w.events, w.per_command, w.streams, args.max_seconds))
            stored = await c.stored()
            if stored != result.events:
                raise RuntimeError(f"{c.name}: {stored} rows stored, {result.events} expected")
            series[c.name].results.append(result)
            print(f"  {w.key:<8} round {r + 1} {c.name:<14} {result.rate:>10,.0f} ev/s", flush=True)
    return series


# --------------------------------------------------------------------------- relay workload

Message = tuple[bytes, bytes, list[tuple[str, bytes]]]  # key, value, headers


async def fill_outbox(conn: asyncpg.Connection, store: EventStore, args: argparse.Namespace, n: int) -> None:
    """Empty the tables, then store ``n`` events: envelopes made by our EventStore (``args.batch``
    per command, round-robin over ``args.streams`` streams), rows written in bulk with the raw
    unnest statement (the relay reads rows, so how they got there does not matter). Not timed."""
    await conn.execute("TRUNCATE events, outbox RESTART IDENTITY")
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
) -> dict[str, Series]:
    store = EventStore("bench-core", registry)
    ours_topic, raw_topic = topics
    await ensure_topics(kafka, [ours_topic, raw_topic], partitions=KAFKA_PARTITIONS)
    series = {"ours": Series(), "raw": Series()}
    sent = 0
    warm = max(1, min(args.relay_events, args.relay_batch * 2))
    for r in range(-1, args.rounds):  # round -1 is the warm-up
        n = warm if r < 0 else args.relay_events
        await fill_outbox(filler, store, args, n)
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


# --------------------------------------------------------------------------- setup and report


def with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


def plain_url(url: str) -> str:
    """postgresql+asyncpg://... -> postgresql://..."""
    scheme, rest = url.split("://", 1)
    return f"{scheme.split('+')[0]}://{rest}"


@contextlib.asynccontextmanager
async def databases(admin_url: str, names: Sequence[str]) -> AsyncIterator[dict[str, str]]:
    """Create the run's databases; drop them afterwards, even after an error (reconnecting, for
    up to ~30 s, if the server went away in between)."""
    admin = await asyncpg.connect(admin_url, timeout=10)
    created: list[str] = []
    try:
        for name in names:
            await admin.execute(f'CREATE DATABASE "{name}"')
            created.append(name)
        yield {name: with_database(admin_url, name) for name in names}
    finally:
        with contextlib.suppress(Exception):
            await admin.close()
        await drop_databases(admin_url, created)


async def drop_databases(admin_url: str, names: Sequence[str], attempts: int = 15) -> None:
    left = list(names)
    for attempt in range(attempts):
        if not left:
            return
        try:
            conn = await asyncpg.connect(admin_url, timeout=10)
            try:
                while left:
                    await conn.execute(f'DROP DATABASE IF EXISTS "{left[0]}" WITH (FORCE)')
                    left.pop(0)
            finally:
                await conn.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            if attempt == attempts - 1:
                print(f"WARNING: could not drop {', '.join(left)}: {exc!r}", file=sys.stderr)
                return
            await asyncio.sleep(2)


async def delete_topics(kafka: str, topics: Sequence[str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        doomed = [t for t in topics if t in existing]
        if doomed:
            await admin.delete_topics(doomed)
    finally:
        await admin.close()


async def core_schema(url: str, *, pre_ping: bool) -> AsyncEngine:
    """An engine configured like shared.runtime.ServiceRuntime's, on a database with the core tables."""
    engine = create_async_engine(
        url.replace("postgresql://", "postgresql+asyncpg://", 1),
        pool_size=10,
        max_overflow=10,
        pool_pre_ping=pre_ping,
        pool_recycle=1800,
    )
    async with engine.begin() as conn:
        await conn.run_sync(create_core_tables)
    return engine


def machine_info() -> list[tuple[str, str]]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = []
    for dist in ("sqlalchemy", "asyncpg", "aiokafka", "pydantic", "eventsourcing", "psycopg"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions.append(f"{dist} {importlib.metadata.version(dist)}")
    return [
        ("cores", f"{os.cpu_count()} ({cpu})"),
        ("python", f"{platform.python_version()} ({platform.platform()})"),
        ("libraries", ", ".join(versions)),
    ]


async def server_info(admin_url: str, kafka: str) -> list[tuple[str, str]]:
    conn = await asyncpg.connect(admin_url, timeout=10)
    try:
        version = await conn.fetchval("SELECT version()")
        settings = []
        for name in ("synchronous_commit", "fsync", "shared_buffers", "wal_level"):
            settings.append(f"{name}={await conn.fetchval(f'SHOW {name}')}")
    finally:
        await conn.close()
    parts = urlsplit(admin_url)
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        cluster = await admin.describe_cluster()
        brokers = len(cluster.get("brokers", []))
    finally:
        await admin.close()
    return [
        (
            "postgresql",
            f"{version} at {parts.hostname}:{parts.port or 5432} (untouched: {', '.join(settings)})",
        ),
        ("kafka", f"bootstrap {kafka}, {brokers} broker(s), {KAFKA_PARTITIONS} partitions per topic, RF 1"),
    ]


async def connection_security(
    engine: AsyncEngine, raw: asyncpg.Connection, es: EventSourcingLib | None
) -> str:
    """Whether each contender's session is TLS (client defaults, same for all: sslmode=prefer)."""
    query = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
    async with engine.connect() as conn:
        ours = await conn.scalar(sa.text(query))
    parts = [f"ours ssl={ours}", f"raw ssl={await raw.fetchval(query)}"]
    if es is not None:

        def es_ssl() -> object:
            with es.datastore.transaction(commit=False) as curs:
                curs.execute(query)
                row = curs.fetchone()
                return row["ssl"] if row else None

        parts.append(f"eventsourcing ssl={await asyncio.to_thread(es_ssl)}")
    return ", ".join(parts) + " (client defaults left as they are)"


def fmt_rate(x: float | None) -> str:
    return "n/a" if x is None else f"{x:,.0f}"


def fmt_ratio(a: float | None, b: float | None, *, percent: bool) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.0%}" if percent else f"{a / b:.2f}x"


def verdict(ours: float | None, raw: float | None, es: float | None, target: float) -> str:
    parts = []
    if ours is not None and raw:
        parts.append(f"{'met' if ours / raw >= target else 'BELOW'} {target:.0%} of raw")
    if ours is not None and es:
        parts.append("ahead of es" if ours > es else "BEHIND es")
    return ", ".join(parts) or "n/a"


def print_table(rows: list[tuple[str, dict[str, Series], float]]) -> None:
    header = (
        "workload",
        "ours ev/s",
        "raw ev/s",
        "ours/raw",
        "eventsourcing ev/s",
        "ours/eventsourcing",
        "vs target",
    )
    lines = []
    for label, series, target in rows:
        ours = series["ours"].rate
        raw = series["raw"].rate
        es = series["eventsourcing"].rate if "eventsourcing" in series else None
        lines.append(
            (
                label,
                fmt_rate(ours),
                fmt_rate(raw),
                fmt_ratio(ours, raw, percent=True),
                fmt_rate(es),
                fmt_ratio(ours, es, percent=False),
                verdict(ours, raw, es, target),
            )
        )
    widths = [max(len(h), *(len(line[i]) for line in lines)) for i, h in enumerate(header)]

    def row(cells: Sequence[str]) -> str:
        first = cells[0].ljust(widths[0])
        middle = [c.rjust(w) for c, w in zip(cells[1:-1], widths[1:-1], strict=True)]
        return " | ".join([first, *middle, cells[-1].ljust(widths[-1])])

    print(row(header).rstrip())
    print("-+-".join("-" * w for w in widths))
    for line in lines:
        print(row(line).rstrip())


async def main_async(args: argparse.Namespace) -> None:
    admin_url = plain_url(os.environ.get("DATABASE_URL", DEFAULT_ADMIN_URL))
    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA)
    run_id = uuid.uuid4().hex[:10]
    began = time.perf_counter()

    print("== machine")
    for key, value in [*machine_info(), *await server_info(admin_url, kafka)]:
        print(f"  {key:<11} {value}")
    print("== parameters")
    print(
        f"  events/run {args.events}, batch {args.batch}, streams {args.streams} (load+decide+append: "
        f"{args.load_events} events over {args.load_streams} streams), payload note {args.payload} "
        f"chars, rounds {args.rounds} (median reported), warm-up {args.warmup} events/contender/"
        f"workload, max {args.max_seconds:.0f} s per timed run"
    )
    print(
        f"  relay: {args.relay_events} events/run, relay batch {args.relay_batch}; raw producer "
        f"{RAW_PRODUCER_CONFIG}"
    )
    print(
        f"  ours: SQLAlchemy asyncpg engine like ServiceRuntime's (pool 10+10, pre_ping="
        f"{args.pre_ping}); one client, commands strictly one after another"
    )

    names = [f"bench_{run_id}_{n}" for n in ("ours", "raw", "es", "relay")]
    topics = (f"bench.{run_id}.relay-ours", f"bench.{run_id}.relay-raw")
    workloads = [
        w
        for w in (
            Workload("append1", "append only, 1 event/command", 1, False, args.events, args.streams),
            Workload(
                "batch",
                f"append only, {args.batch} events/command",
                args.batch,
                False,
                args.events,
                args.streams,
            ),
            Workload(
                "load1", "load+decide+append, 1 event/command", 1, True, args.load_events, args.load_streams
            ),
        )
        if w.key in args.workloads
    ]
    table: list[tuple[str, dict[str, Series], float]] = []
    async with databases(admin_url, names) as urls:
        engines: list[AsyncEngine] = []
        raw_conn: asyncpg.Connection | None = None
        es: EventSourcingLib | None = None
        try:
            ours_engine = await core_schema(urls[names[0]], pre_ping=args.pre_ping)
            engines.append(ours_engine)
            raw_schema = await core_schema(urls[names[1]], pre_ping=False)
            await raw_schema.dispose()
            raw_conn = await asyncpg.connect(urls[names[1]], timeout=10)
            if not args.skip_eventsourcing:
                try:
                    es = await asyncio.to_thread(EventSourcingLib, urls[names[2]], "x" * args.payload)
                except ImportError as exc:
                    print(f"  eventsourcing not installed ({exc}); its column stays n/a")
            note = "x" * args.payload
            ours, raw = Ours(ours_engine, note), Raw(raw_conn, note)
            print(f"  connections: {await connection_security(ours_engine, raw_conn, es)}")
            print("== append workloads (events/s per timed round)")
            for w in workloads:
                series = await measure_append(w, contenders_for(w, ours, raw, es), args)
                table.append((w.label, series, APPEND_TARGET))
            if "relay" in args.workloads:
                print("== relay workload")
                relay_engine = await core_schema(urls[names[3]], pre_ping=args.pre_ping)
                engines.append(relay_engine)
                filler = await asyncpg.connect(urls[names[3]], timeout=10)
                try:
                    series = await measure_relay(relay_engine, filler, kafka, topics, args)
                finally:
                    await filler.close()
                    with contextlib.suppress(Exception):
                        await delete_topics(kafka, topics)
                table.append(("relay outbox -> Kafka (acks=all, idempotent)", series, RELAY_TARGET))
        finally:
            if es is not None:
                es.close()
            if raw_conn is not None:
                await raw_conn.close()
            for engine in engines:
                await engine.dispose()

    print("== details (median of rounds is what the table shows; * = run hit --max-seconds)")
    for label, series, _ in table:
        print(f"  {label}")
        for name, s in series.items():
            print(f"    {name:<14} {s.describe()}")
    print("== results")
    print_table(table)
    print(
        f"targets (reference, not asserted): append >= {APPEND_TARGET:.0%} of raw asyncpg, relay >= "
        f"{RELAY_TARGET:.0%} of raw aiokafka, ours ahead of eventsourcing (ours/eventsourcing > 1)"
    )
    print(f"total wall time {time.perf_counter() - began:.1f} s; databases dropped, topics deleted")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m bench.core",
        description="Event store and outbox relay vs raw asyncpg/aiokafka and the eventsourcing library.",
        epilog="Environment: DATABASE_URL (admin URL that may CREATE DATABASE), KAFKA_BOOTSTRAP_SERVERS.",
    )
    p.add_argument("--events", type=int, default=4000, help="events per timed append run (default 4000)")
    p.add_argument(
        "--load-events", type=int, default=1000, help="events per timed load+decide+append run (default 1000)"
    )
    p.add_argument(
        "--load-streams",
        type=int,
        default=100,
        help="streams of the load+decide+append runs (default 100: histories grow to 10 events)",
    )
    p.add_argument("--batch", type=int, default=10, help="events per batched command (default 10)")
    p.add_argument("--streams", type=int, default=500, help="streams written round-robin (default 500)")
    p.add_argument("--payload", type=int, default=64, help="chars of padding in each event (default 64)")
    p.add_argument("--rounds", type=int, default=3, help="timed rounds per contender (default 3)")
    p.add_argument("--warmup", type=int, default=300, help="warm-up events per contender (default 300)")
    p.add_argument("--relay-events", type=int, default=20000, help="events per relay run (default 20000)")
    p.add_argument(
        "--relay-batch", type=int, default=1000, help="OutboxRelay batch_size (default 1000, as in the relay)"
    )
    p.add_argument("--max-seconds", type=float, default=60.0, help="cap per timed run (default 60)")
    p.add_argument(
        "--pre-ping",
        action=argparse.BooleanOptionalAction,
        default=False,
        help="pool_pre_ping on our engine (default off, as in ServiceRuntime since the first benchmark)",
    )
    p.add_argument("--skip-eventsourcing", action="store_true", help="leave the library out")
    p.add_argument(
        "--workloads",
        type=lambda v: [w.strip() for w in v.split(",") if w.strip()],
        default=list(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default all)",
    )
    args = p.parse_args(argv)
    for name in (
        "events",
        "load_events",
        "load_streams",
        "batch",
        "streams",
        "rounds",
        "relay_events",
        "relay_batch",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown or not args.workloads:
        p.error(f"--workloads: choose from {','.join(WORKLOADS)} (unknown: {','.join(sorted(unknown))})")
    if args.warmup < 0 or args.payload < 0 or args.max_seconds <= 0:
        p.error("--warmup and --payload must be >= 0, --max-seconds > 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
