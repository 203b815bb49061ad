"""The relay's fetch has one plan whatever the statistics say: an index-ordered walk of the outbox.

A measurement at 10 million stored events and 100,000 pending showed the prepared fetch keeping
the plan made while the outbox was empty (a sequential scan of the whole outbox and a top-N
sort, 472 ms per batch) until autovacuum analyzed the table. The relay's session settings
(``shared.relay.relay_session_settings``) leave PostgreSQL one way to serve it: ``outbox_pkey``
in order, nested loop into ``events_pkey``, stopped by the LIMIT. Shown here on real PostgreSQL
with statistics that lie in both directions, and for a generic (prepared) plan.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.relay import _DELETE, _PENDING, DEFAULT_LEASE_SECONDS, relay_session_settings

pytestmark = pytest.mark.integration

FILL = """
INSERT INTO events (event_id, stream_type, stream_id, version, event_type, schema_version,
                    occurred_at, correlation_id, data)
SELECT gen_random_uuid(), 'Counter', 's' || (g % 500), g / 500 + 1, 'Counted', 1, now(),
       gen_random_uuid(), '{"n": 1}'::jsonb
FROM generate_series($1::bigint, $2::bigint - 1) AS g
"""


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


async def explain(conn: asyncpg.Connection, query: str, *args: Any) -> list[dict[str, Any]]:
    raw = await conn.fetchval(f"EXPLAIN (FORMAT JSON) {query}", *args)
    return list(nodes(json.loads(raw)[0]["Plan"]))


def assert_index_ordered(plan: list[dict[str, Any]]) -> None:
    kinds = [n["Node Type"] for n in plan]
    assert kinds[0] == "Limit", kinds
    assert not {"Seq Scan", "Sort", "Incremental Sort", "Gather", "Gather Merge", "Hash Join"} & set(kinds), (
        kinds
    )
    assert "Merge Join" not in kinds, kinds
    outbox_scans = [n for n in plan if n.get("Relation Name") == "outbox"]
    assert [n["Node Type"] for n in outbox_scans] in (["Index Scan"], ["Index Only Scan"]), kinds
    assert outbox_scans[0]["Index Name"] == "outbox_pkey"
    assert "Index Cond" not in outbox_scans[0], "the outbox is walked in order, not probed"
    events_scans = [n for n in plan if n.get("Relation Name") == "events"]
    assert [n.get("Index Name") for n in events_scans] == ["events_pkey"], kinds
    assert "position" in events_scans[0].get("Index Cond", ""), "each event is looked up by position"
    # The outbox drives: the first scan under the Limit's nested loop is the outbox walk.
    first_scan = next(n for n in plan if n.get("Relation Name") in {"outbox", "events"})
    assert first_scan.get("Relation Name") == "outbox", kinds


@pytest.fixture
async def relay_conn(core_engine: AsyncEngine, database_url: str) -> Any:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    # Statistics only from what this test does: no autovacuum, no autoanalyze.
    for table in ("events", "outbox", "outbox_held"):
        await conn.execute(f"ALTER TABLE {table} SET (autovacuum_enabled = off)")
    for name, value in relay_session_settings(DEFAULT_LEASE_SECONDS).items():
        await conn.execute(f"SET {name} = '{value}'")
    yield conn
    await conn.close()


async def test_fetch_is_index_ordered_with_a_never_analyzed_outbox(relay_conn: asyncpg.Connection) -> None:
    await relay_conn.execute(FILL, 0, 60_000)
    await relay_conn.execute("INSERT INTO outbox SELECT position FROM events WHERE position > 20000")
    assert_index_ordered(await explain(relay_conn, _PENDING, "p", 1000, []))
    plan = await explain(relay_conn, _DELETE, list(range(20_001, 21_001)))
    scans = [n for n in plan if n.get("Relation Name") == "outbox" and n["Node Type"] != "ModifyTable"]
    assert [(n["Node Type"], n.get("Index Name")) for n in scans] == [("Index Scan", "outbox_pkey")]


async def test_fetch_is_index_ordered_when_the_outbox_was_analyzed_empty(
    relay_conn: asyncpg.Connection,
) -> None:
    """The trap of the measurement: statistics say "empty", the backlog is 40,000 rows."""
    await relay_conn.execute(FILL, 0, 60_000)
    await relay_conn.execute("ANALYZE events")
    await relay_conn.execute("ANALYZE outbox")  # empty now
    await relay_conn.execute("INSERT INTO outbox SELECT position FROM events WHERE position > 20000")
    assert_index_ordered(await explain(relay_conn, _PENDING, "p", 1000, []))

    # ... and with statistics that are right (a big outbox), where a parallel plan was chosen.
    await relay_conn.execute("ANALYZE outbox")
    assert_index_ordered(await explain(relay_conn, _PENDING, "p", 1000, []))


async def test_a_big_published_store_is_not_walked(relay_conn: asyncpg.Connection) -> None:
    """120,000 events published, 1,000 pending at the end: a batch touches ~1,000 events, not the
    store (the plan a flattened join allowed walked events_pkey from position 1)."""
    await relay_conn.execute(FILL, 0, 121_000)
    await relay_conn.execute("ANALYZE events")
    await relay_conn.execute("INSERT INTO outbox SELECT position FROM events WHERE position > 120000")
    raw = await relay_conn.fetchval(f"EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) {_PENDING}", "p", 1000, [])
    plan = list(nodes(json.loads(raw)[0]["Plan"]))
    assert_index_ordered(plan)
    events_scan = next(n for n in plan if n.get("Relation Name") == "events")
    assert events_scan["Actual Rows"] * events_scan["Actual Loops"] == 1000
    assert plan[0]["Shared Hit Blocks"] + plan[0]["Shared Read Blocks"] < 20_000


async def test_a_generic_plan_of_the_prepared_fetch_is_index_ordered_too(
    relay_conn: asyncpg.Connection,
) -> None:
    """force_custom_plan keeps asyncpg's prepared statement from freezing a plan; should a generic
    plan be used anyway (a pooler, a changed setting), it is the same walk."""
    await relay_conn.execute("ANALYZE outbox")  # empty
    await relay_conn.execute(FILL, 0, 30_000)
    await relay_conn.execute("INSERT INTO outbox SELECT position FROM events")
    await relay_conn.execute("SET plan_cache_mode = force_generic_plan")
    await relay_conn.execute(f"PREPARE pending(text, int, bigint[]) AS {_PENDING}")
    assert_index_ordered(await explain(relay_conn, "EXECUTE pending('p', 1000, '{}')"))
    rows = await relay_conn.fetch("EXECUTE pending('p', 1000, '{}')")
    assert [r["position"] for r in rows] == list(range(1, 1001))


async def test_the_read_ahead_skips_the_rows_in_flight_in_the_outbox_walk(
    relay_conn: asyncpg.Connection,
) -> None:
    """The next batch, read while 1,000 rows are still in flight: the same index walk, the
    in-flight rows filtered out on the outbox scan (never looked up in ``events``), and what
    comes back is the head of the outbox after them."""
    await relay_conn.execute(FILL, 0, 30_000)
    await relay_conn.execute("INSERT INTO outbox SELECT position FROM events")
    in_flight = list(range(1, 1001))
    raw = await relay_conn.fetchval(f"EXPLAIN (ANALYZE, FORMAT JSON) {_PENDING}", "p", 1000, in_flight)
    plan = list(nodes(json.loads(raw)[0]["Plan"]))
    assert_index_ordered(plan)
    outbox_scan = next(n for n in plan if n.get("Relation Name") == "outbox")
    assert "position" in outbox_scan.get("Filter", ""), "filtered where the outbox is walked"
    events_scan = next(n for n in plan if n.get("Relation Name") == "events")
    assert events_scan["Actual Rows"] * events_scan["Actual Loops"] == 1000
    rows = await relay_conn.fetch(_PENDING, "p", 1000, in_flight)
    assert [r["position"] for r in rows] == list(range(1001, 2001))
