"""What group commit of injury reports could buy, measured on plain asyncpg (not our code).

The intake opens one transaction per HTTP command: about seven round trips per injury report
(BEGIN, the member's stream, the report's context, the encrypted details, the append, the
report and timeline rows, COMMIT). This probe runs statements of the same shapes on a scratch
database, once per report from 32 clients, and then over groups of N reports in one transaction
with every statement batched over the group (``= ANY($1)``, ``unnest``) from 4 clients, and prints
reports/s and the CPU per report of this client and of every PostgreSQL process. It is the
ceiling of the idea (no HTTP, no domain, no failure handling), for deciding whether to build it.

    .venv/bin/python -m bench.group_commit            # needs `make infra`; ~30 s
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
import uuid
from collections.abc import Iterator
from datetime import date

import asyncpg

from bench.cpu import snapshot
from tests.infra import LOCAL_ADMIN_URL

_DDL = """
CREATE TABLE events (position bigserial PRIMARY KEY, event_id uuid UNIQUE NOT NULL,
  stream_id text NOT NULL, version int NOT NULL, event_type text NOT NULL,
  occurred_at timestamptz NOT NULL DEFAULT now(), data jsonb NOT NULL, UNIQUE (stream_id, version));
CREATE TABLE outbox (position bigint PRIMARY KEY);
CREATE TABLE details (report_id uuid PRIMARY KEY, member_id uuid NOT NULL, d1 bytea, d2 bytea, d3 bytea);
CREATE TABLE reports (report_id uuid PRIMARY KEY, member_id uuid NOT NULL, occurred_on date, severity text);
CREATE INDEX ON reports (member_id, occurred_on);
CREATE TABLE timeline (id bigserial PRIMARY KEY, member_id uuid NOT NULL, kind text, ref uuid, at date);
CREATE TABLE plan_versions (code text PRIMARY KEY, version int);
INSERT INTO plan_versions VALUES ('accident', 3), ('jing_card', 2);
"""
_APPEND = """
WITH ins AS (INSERT INTO events (event_id, stream_id, version, event_type, data)
  SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::jsonb[]) RETURNING position)
INSERT INTO outbox SELECT position FROM ins RETURNING position
"""
_CONTEXT_ONE = """
SELECT code, version, NULL::date AS first FROM plan_versions
UNION ALL (SELECT NULL, NULL, occurred_on FROM reports WHERE member_id = $1 AND occurred_on <= $2
           ORDER BY occurred_on LIMIT 1)
"""
_CONTEXT_MANY = """
SELECT code, version, NULL::uuid AS member_id, NULL::date AS first FROM plan_versions
UNION ALL SELECT NULL, NULL, r.member_id, min(r.occurred_on)
FROM reports r JOIN unnest($1::uuid[], $2::date[]) q(m, d) ON r.member_id = q.m AND r.occurred_on <= q.d
GROUP BY r.member_id
"""
_REPORT_ONE = """
WITH r AS (INSERT INTO reports VALUES ($1, $2, $3, 'minor'))
INSERT INTO timeline (member_id, kind, ref, at) VALUES ($2, 'report', $1, $3)
"""
_REPORT_MANY = """
WITH r AS (INSERT INTO reports SELECT a, b, $3, 'minor' FROM unnest($1::uuid[], $2::uuid[]) t(a, b))
INSERT INTO timeline (member_id, kind, ref, at)
SELECT b, 'report', a, $3 FROM unnest($1::uuid[], $2::uuid[]) t(a, b)
"""
_STREAM_ONE = "SELECT * FROM events WHERE stream_id = $1 AND version > 0 ORDER BY version"
_DETAILS_MANY = """
INSERT INTO details SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bytea[], $4::bytea[], $5::bytea[])
"""
_DAY = date(2026, 5, 1)
_SECRETS = (b"x" * 60, b"y" * 60, b"z" * 40)


def _event(member: uuid.UUID) -> str:
    return json.dumps({"member_id": str(member), "severity": "minor"})


async def one_transaction_per_report(pool: asyncpg.Pool, member: uuid.UUID) -> None:
    async with pool.acquire() as c, c.transaction():
        await report_statements(c, member)


async def shared_transaction_per_group(pool: asyncpg.Pool, members: list[uuid.UUID]) -> None:
    """Each report's own statements, one after another, in one transaction per group: group
    commit without rewriting a handler for many reports."""
    async with pool.acquire() as c, c.transaction():
        for member in members:
            await report_statements(c, member)


async def report_statements(c: asyncpg.Connection, member: uuid.UUID) -> None:
    await c.fetch("SELECT * FROM events WHERE stream_id = $1 AND version > 0 ORDER BY version", str(member))
    await c.fetch(_CONTEXT_ONE, member, _DAY)
    report = uuid.uuid4()
    await c.execute("INSERT INTO details VALUES ($1, $2, $3, $4, $5)", report, member, *_SECRETS)
    await c.fetch(_APPEND, [uuid.uuid4()], [str(report)], [1], ["InjuryReported"], [_event(member)])
    await c.execute(_REPORT_ONE, report, member, _DAY)


async def one_transaction_per_group(pool: asyncpg.Pool, members: list[uuid.UUID]) -> None:
    n = len(members)
    async with pool.acquire() as c, c.transaction():
        await c.fetch(
            "SELECT * FROM events WHERE stream_id = ANY($1::text[]) ORDER BY stream_id, version",
            [str(m) for m in members],
        )
        await c.fetch(_CONTEXT_MANY, members, [_DAY] * n)
        reports = [uuid.uuid4() for _ in members]
        await c.execute(
            _DETAILS_MANY,
            reports,
            members,
            *([s] * n for s in _SECRETS),
        )
        await c.fetch(
            _APPEND,
            [uuid.uuid4() for _ in members],
            [str(r) for r in reports],
            [1] * n,
            ["InjuryReported"] * n,
            [_event(m) for m in members],
        )
        await c.execute(_REPORT_MANY, reports, members, _DAY)


async def main(admin_url: str, reports: int) -> None:
    name = f"bench_group_commit_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    await admin.close()
    try:
        pool = await asyncpg.create_pool(f"{admin_url.rsplit('/', 1)[0]}/{name}", min_size=32, max_size=32)
        members = [uuid.uuid4() for _ in range(100)]
        async with pool.acquire() as c:
            await c.execute(_DDL)
            for m in members:  # a member's stream: joined, card, enrolments ...
                await c.fetch(_APPEND, [uuid.uuid4() for _ in range(6)], [str(m)] * 6, list(range(1, 7)),
                              ["E"] * 6, ['{"a": 1}'] * 6)  # fmt: skip
        print(f"{reports} injury reports per row; CPU per report of this client and of PostgreSQL")
        for label, size, clients in (
            ("one transaction per report, 32 clients", 1, 32),
            ("groups of 8, one by one, 4 clients", -8, 4),
            ("groups of 8, 4 clients", 8, 4),
            ("groups of 16, 4 clients", 16, 4),
        ):
            one_by_one, size = size < 0, abs(size)
            groups = iter(range(reports // size))

            async def worker(
                size: int = size, groups: Iterator[int] = groups, one_by_one: bool = one_by_one
            ) -> None:
                for _ in groups:
                    chosen = random.sample(members, size)
                    if size == 1:
                        await one_transaction_per_report(pool, chosen[0])
                    elif one_by_one:
                        await shared_transaction_per_group(pool, chosen)
                    else:
                        await one_transaction_per_group(pool, chosen)

            before, t0 = snapshot(), time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(clients)))
            after, t1 = snapshot(), time.perf_counter()
            used = {part: after[part] - before[part] for part in ("client", "postgres")}
            client, postgres = (1000 * used[part] / reports for part in ("client", "postgres"))
            rate = reports / (t1 - t0)
            print(f"{label:40s} {rate:7,.0f} reports/s   client {client:.2f} ms   postgres {postgres:.2f} ms")
        await pool.close()
    finally:
        admin = await asyncpg.connect(admin_url)
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--admin-url", default=os.environ.get("DATABASE_URL", LOCAL_ADMIN_URL))
    parser.add_argument("--reports", type=int, default=4000)
    args = parser.parse_args()
    asyncio.run(main(args.admin_url, args.reports))
