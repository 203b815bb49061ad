"""The append workloads: ``append1`` (one event per command), ``batch`` (several per command)
and ``load1`` (load + decide + append), each run by every contender of bench/contenders.py."""

from __future__ import annotations

import argparse
import asyncio
from dataclasses import dataclass

from bench.contenders import EventSourcingLib, Ours, Raw
from bench.harness import Contender, Plan, Series, drive_async, drive_concurrent, drive_sync

# --------------------------------------------------------------------------- append workloads


@dataclass(frozen=True)
class Workload:
    key: str
    label: str
    per_command: int
    load: bool  # load + decide + append, instead of append only
    events: int  # per timed run
    streams: int  # written round-robin
    clients: int = 1  # > 1: that many at once, each on its own connection and streams


def contenders_for(w: Workload, ours: Ours, raw: Raw, es: EventSourcingLib | None) -> list[Contender]:
    if w.clients > 1:
        return concurrent_contenders(w, ours, raw, es)
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


def concurrent_contenders(w: Workload, ours: Ours, raw: Raw, es: EventSourcingLib | None) -> list[Contender]:
    """Append only, one event per command, ``w.clients`` clients at once: ours on the engine's
    pool, raw on an asyncpg pool of ``w.clients`` connections, eventsourcing in ``w.clients``
    threads on its own pool of that size (``es`` must have been built with it)."""
    ours_op = ours.append_only(w.per_command)
    raw_op = raw.append_only_pooled(w.per_command)
    n = w.clients
    result = [
        Contender(
            "ours",
            lambda p: drive_concurrent(lambda s: drive_async(ours_op, s), p, n),
            ours.reset,
            ours.stored,
        ),
        Contender(
            "raw", lambda p: drive_concurrent(lambda s: drive_async(raw_op, s), p, n), raw.reset, raw.stored
        ),
    ]
    if es is not None:
        lib = es
        es_op = lib.append_only(w.per_command)
        result.append(
            Contender(
                "eventsourcing",
                lambda p: drive_concurrent(lambda s: asyncio.to_thread(drive_sync, es_op, s), p, n),
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
