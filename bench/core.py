"""Core benchmark: our event store and outbox relay against their raw limits and a peer library.

Run with ``python -m bench.core`` (``make bench-core``). Everything happens in one process, on one
client connection except for ``append8`` (``--clients`` clients at once, each contender on that
many connections: our engine's pool, an asyncpg pool, eventsourcing's pool and threads): fresh
databases on the given PostgreSQL (dropped at the end), fresh topics on the given Kafka (deleted at
the end). See bench/README.md for what each figure means.

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
import logging
import os
import sys
import time
import uuid
from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncEngine

from bench.append import Workload, contenders_for, measure_append
from bench.contenders import EventSourcingLib, Ours, Raw, connection_security
from bench.harness import (
    APPEND_TARGET,
    CONCURRENT_TARGET,
    CONCURRENT_VS_ES,
    DEFAULT_ADMIN_URL,
    DEFAULT_KAFKA,
    RAW_PRODUCER_CONFIG,
    RELAY_TARGET,
    WORKLOADS,
    Series,
    core_schema,
    databases,
    delete_topics,
    machine_info,
    plain_url,
    print_table,
    server_info,
)
from bench.relay import measure_relay
from bench.store import build_store


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
        f"  store: {args.store_events:,} events prebuilt per database (0: every run starts empty)\n"
        f"  relay: {args.relay_events} events/run, relay batch {args.relay_batch}; raw producer "
        f"{RAW_PRODUCER_CONFIG}"
    )
    print(
        f"  ours: SQLAlchemy asyncpg engine like ServiceRuntime's (pool 10+10, pre_ping="
        f"{args.pre_ping}); one client, commands strictly one after another (append8: "
        f"{args.clients} such clients at once)"
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
            Workload(
                "append8",
                f"append only, 1 event/command, {args.clients} clients on {args.clients} connections",
                1,
                False,
                args.events,
                args.streams,
                clients=args.clients,
            ),
        )
        if w.key in args.workloads
    ]
    table: list[tuple[str, dict[str, Series], float]] = []
    appended: dict[str, dict[str, Series]] = {}
    async with databases(admin_url, names) as urls:
        engines: list[AsyncEngine] = []
        raw_conn: asyncpg.Connection | None = None
        raw_pool: asyncpg.Pool | None = None
        es: EventSourcingLib | None = None
        es_pool: EventSourcingLib | None = None  # the concurrent workload's: args.clients connections
        try:
            ours_engine = await core_schema(urls[names[0]], pre_ping=args.pre_ping)
            engines.append(ours_engine)
            raw_schema = await core_schema(urls[names[1]], pre_ping=False)
            await raw_schema.dispose()
            raw_conn = await asyncpg.connect(urls[names[1]], timeout=10)
            if "append8" in args.workloads:
                raw_pool = await asyncpg.create_pool(
                    urls[names[1]], min_size=args.clients, max_size=args.clients, timeout=10
                )
            relay_engine = await core_schema(urls[names[3]], pre_ping=args.pre_ping)
            engines.append(relay_engine)
            bases = {name: 0 for name in names}
            if args.store_events:
                print(f"== prebuilt store: {args.store_events:,} events per database (not pending)")
                wanted = ([names[0], names[1]] if workloads else []) + (
                    [names[3]] if "relay" in args.workloads else []
                )
                for name in wanted:
                    bases[name] = await build_store(urls[name], args.store_events, args.payload, name)
            if not args.skip_eventsourcing and not args.store_events:
                try:
                    es = await asyncio.to_thread(EventSourcingLib, urls[names[2]], "x" * args.payload)
                except ImportError as exc:
                    print(f"  eventsourcing not installed ({exc}); its column stays n/a")
                if es is not None and "append8" in args.workloads:
                    es_pool = await asyncio.to_thread(
                        EventSourcingLib, urls[names[2]], "x" * args.payload, args.clients
                    )
            note = "x" * args.payload
            ours = Ours(ours_engine, note, bases[names[0]])
            raw = Raw(raw_conn, note, bases[names[1]], raw_pool)
            print(f"  connections: {await connection_security(ours_engine, raw_conn, es)}")
            print("== append workloads (events/s per timed round)")
            for w in workloads:
                lib = es_pool if w.clients > 1 else es
                series = await measure_append(w, contenders_for(w, ours, raw, lib), args)
                appended[w.key] = series
                table.append((w.label, series, CONCURRENT_TARGET if w.clients > 1 else APPEND_TARGET))
            if "relay" in args.workloads:
                print("== relay workload")
                filler = await asyncpg.connect(urls[names[3]], timeout=10)
                try:
                    series = await measure_relay(relay_engine, filler, kafka, topics, args, bases[names[3]])
                finally:
                    await filler.close()
                    with contextlib.suppress(Exception):
                        await delete_topics(kafka, topics)
                table.append(("relay outbox -> Kafka (acks=all, idempotent)", series, RELAY_TARGET))
        finally:
            if es is not None:
                es.close()
            if es_pool is not None:
                es_pool.close()
            if raw_pool is not None:
                await raw_pool.close()
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
    if "append8" in appended:
        print(concurrent_verdict(appended["append8"], appended.get("append1"), args.clients))
    print(f"total wall time {time.perf_counter() - began:.1f} s; databases dropped, topics deleted")


def concurrent_verdict(concurrent: dict[str, Series], single: dict[str, Series] | None, clients: int) -> str:
    """The concurrent row's own targets: against raw *single-client* append1, and eventsourcing."""
    ours = concurrent["ours"].rate
    raw_one = single["raw"].rate if single else None
    es = concurrent["eventsourcing"].rate if "eventsourcing" in concurrent else None
    parts = [
        f"ours with {clients} clients / raw single-client append1: "
        + (f"{ours / raw_one:.0%}" if ours and raw_one else "n/a (run append1 too)")
        + f" (target >= {CONCURRENT_TARGET:.0%})",
        f"ours / eventsourcing with {clients} clients: "
        + (f"{ours / es:.2f}x" if ours and es else "n/a")
        + f" (target >= {CONCURRENT_VS_ES:.0f}x)",
    ]
    return "concurrent row: " + "; ".join(parts)


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
    p.add_argument("--clients", type=int, default=8, help="clients (and connections) of append8 (default 8)")
    p.add_argument("--skip-eventsourcing", action="store_true", help="leave the library out")
    p.add_argument(
        "--store-events",
        type=int,
        default=0,
        help="prebuild this many stored (already published) events in each database first, e.g. "
        "10000000; runs then add to that store instead of an empty one (default 0; the "
        "eventsourcing contender is left out when set)",
    )
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
        "clients",
    ):
        if getattr(args, name) < 1:
            p.error(f"--{name.replace('_', '-')} must be at least 1")
    unknown = set(args.workloads) - set(WORKLOADS)
    if unknown or not args.workloads:
        p.error(f"--workloads: choose from {','.join(WORKLOADS)} (unknown: {','.join(sorted(unknown))})")
    if args.store_events < 0:
        p.error("--store-events must be >= 0")
    if args.warmup < 0 or args.payload < 0 or args.max_seconds <= 0:
        p.error("--warmup and --payload must be >= 0, --max-seconds > 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
