"""Projection rebuild rate (``python -m bench.rebuild``, part of ``make bench``).

N events (default 200,000, streams of 10) are built server-side in a fresh database, then:
- raw: a plain asyncpg keyset scan of the same rows in chunks of 1000 (the read limit);
- ours, no-op: shared.projections.rebuild with an apply that does nothing (read + envelope +
  upcast: the replay machinery itself);
- ours, upsert: rebuild with one insert-or-update per event, as a typical read model does;
- ours, upsert, runs: the same upserts as a ``BatchedProjection``, a chunk's in one round trip.
The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
import uuid
from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from bench.harness import DEFAULT_ADMIN_URL, core_schema, databases, plain_url, registry
from bench.store import build_store
from shared import driver
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.projections import Projection, rebuild
from shared.unit_of_work import BatchedProjection, InlineProjection

TARGET = 50_000.0  # events/s

metadata = sa.MetaData()
totals = sa.Table(
    "bench_totals",
    metadata,
    sa.Column("id", sa.Text, primary_key=True),
    sa.Column("total", sa.Integer, nullable=False),
)


async def _noop(conn: AsyncConnection, envelope: EventEnvelope) -> None:
    return None


async def _upsert(conn: AsyncConnection, envelope: EventEnvelope) -> None:
    stmt = insert(totals).values(id=envelope.aggregate_id, total=envelope.data["n"])
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[totals.c.id], set_={"total": totals.c.total + stmt.excluded.total}
        )
    )


_UPSERT = (
    "INSERT INTO bench_totals (id, total) VALUES ($1, $2)"
    " ON CONFLICT (id) DO UPDATE SET total = bench_totals.total + excluded.total"
)


async def _upsert_many(conn: AsyncConnection, envelopes: Sequence[EventEnvelope]) -> None:
    """The same upserts, a chunk's worth in one round trip (shared.driver.executemany)."""
    await driver.executemany(conn, _UPSERT, [(e.aggregate_id, e.data["n"]) for e in envelopes])


async def raw_scan(url: str, batch: int) -> tuple[int, float]:
    conn = await asyncpg.connect(url, timeout=10)
    try:
        started, seen, position = time.perf_counter(), 0, 0
        async with conn.transaction(isolation="repeatable_read"):
            while True:
                rows = await conn.fetch(
                    "SELECT * FROM events WHERE position > $1 ORDER BY position LIMIT $2",
                    position,
                    batch,
                )
                if not rows:
                    break
                position = rows[-1]["position"]
                seen += len(rows)
        return seen, time.perf_counter() - started
    finally:
        await conn.close()


async def main_async(args: argparse.Namespace) -> None:
    admin_url = plain_url(os.environ.get("DATABASE_URL", DEFAULT_ADMIN_URL))
    name = f"bench_rebuild_{uuid.uuid4().hex[:10]}"
    print(f"== projection rebuild over {args.events:,} events (target {TARGET:,.0f} events/s)")
    async with databases(admin_url, [name]) as urls:
        url = urls[name]
        engine = await core_schema(url, pre_ping=False)
        try:
            async with engine.begin() as conn:
                await conn.run_sync(metadata.create_all)
            await build_store(url, args.events, args.payload, "rebuild")
            store = EventStore("bench", registry)
            seen, seconds = await raw_scan(url, args.batch)
            print(f"  raw      asyncpg scan        {seen / seconds:>10,.0f} events/s")
            chosen = args.applies.split(",")
            applies: list[tuple[str, str, InlineProjection]] = [
                ("noop", "no-op apply", _noop),
                ("upsert", "upsert apply", _upsert),
                ("batched", "upsert, runs", BatchedProjection(_upsert, _upsert_many)),
            ]
            for key, label, apply in applies:
                if key not in chosen:
                    continue
                started = time.perf_counter()
                replayed = await rebuild(engine, store, Projection(label, [totals], apply), batch=args.batch)
                rate = replayed / (time.perf_counter() - started)
                verdict = "ok" if rate >= TARGET else "below target"
                print(f"  ours     rebuild, {label:<12}{rate:>10,.0f} events/s  {verdict}")
        finally:
            await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.rebuild")
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--payload", type=int, default=200, help="bytes of padding per event")
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--applies", default="noop,upsert,batched", help="comma list: noop, upsert, batched")
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
