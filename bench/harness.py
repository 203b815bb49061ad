"""The benchmark's harness: the domain under test (a counter), how a timed run is driven and
measured, the fresh databases and topics it runs on, and the report. Workloads: bench/append.py
(append1, batch, load1) and bench/relay.py; contenders of the append workloads:
bench/contenders.py; the prebuilt big store (--store-events): bench/store.py; the entry point
and its options: bench/core.py."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.metadata
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import asyncpg  # type: ignore[import-untyped]
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.aggregate import Aggregate, applies
from shared.events import DomainEvent, EventRegistry
from shared.migrations import create_core_tables

DEFAULT_ADMIN_URL = "postgresql://union_admin:union-admin-local@127.0.0.1:5432/postgres"
DEFAULT_KAFKA = "127.0.0.1:9092"

APPEND_TARGET = 0.50  # ours >= 50 % of raw asyncpg
RELAY_TARGET = 0.70  # ours >= 70 % of raw aiokafka
WORKLOADS = ("append1", "batch", "load1", "append8", "relay")
#: The concurrent row (append8, 8 clients on 8 connections): ours >= 80 % of raw single-client
#: append1, and >= 2x eventsourcing with the same 8 clients (issue 8).
CONCURRENT_TARGET = 0.80
CONCURRENT_VS_ES = 2.0
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


async def drive_concurrent(run: Callable[[Plan], Awaitable[Result]], plan: Plan, clients: int) -> Result:
    """``clients`` runs at once, each on its own share of the streams (no two clients write one
    stream, so no version conflicts): events/s is the total over the wall time of them all."""
    shares = [
        Plan(
            plan.commands // clients + (1 if c < plan.commands % clients else 0),
            plan.per_command,
            plan.streams[c::clients] or [uuid.uuid4()],
            plan.max_seconds,
        )
        for c in range(clients)
    ]
    start = time.perf_counter()
    results = await asyncio.gather(*(run(share) for share in shares))
    seconds = time.perf_counter() - start
    return Result(
        sum(r.events for r in results),
        seconds,
        [x for r in results for x in r.latencies],
        any(r.capped for r in results),
    )


@dataclass
class Contender:
    name: str
    run: Callable[[Plan], Awaitable[Result]]
    reset: Callable[[], Awaitable[None]]
    stored: Callable[[], Awaitable[int]]  # rows written since the last reset (sanity check)


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
