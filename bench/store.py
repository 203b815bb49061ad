"""A big store (``--store-events N``): N already-published events prebuilt in a database, so the
workloads run against a store of that size instead of an empty one. Between runs only what the
runs added goes (bench.contenders.reset_statements)."""

from __future__ import annotations

import time

import asyncpg  # type: ignore[import-untyped]

# --------------------------------------------------------------------------- a big store

_BUILD = """
INSERT INTO events (event_id, stream_type, stream_id, version, event_type, schema_version,
                    occurred_at, correlation_id, data)
SELECT gen_random_uuid(), 'Counter', md5('store:' || (g / 10)::text)::uuid::text, g % 10 + 1,
       'Counted', 1, now(), gen_random_uuid(), jsonb_build_object('n', 1, 'note', $3::text)
FROM generate_series($1::bigint, $2::bigint - 1) AS g
"""


async def build_store(url: str, n: int, payload: int, label: str) -> int:
    """Store ``n`` events (streams of 10, random event ids, as the services make them) that are
    *not* pending, server-side in chunks; then ANALYZE while the outbox is empty, as autovacuum
    would have: the statistics the relay then meets with a backlog. Returns the last position."""
    conn = await asyncpg.connect(url, timeout=10)
    try:
        started = time.perf_counter()
        chunk = 500_000
        for low in range(0, n, chunk):
            await conn.execute(_BUILD, low, min(n, low + chunk), "x" * payload, timeout=None)
        await conn.execute("VACUUM ANALYZE events", timeout=None)
        await conn.execute("ANALYZE outbox")
        base = int(await conn.fetchval("SELECT coalesce(max(position), 0) FROM events"))
        size = await conn.fetchval("SELECT pg_size_pretty(pg_total_relation_size('events'))")
        print(f"  store    {label}: {n:,} events built in {time.perf_counter() - started:.1f} s ({size})")
        return base
    finally:
        await conn.close()
