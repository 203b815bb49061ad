"""HTTP intake micro-benchmark: injury reports into the membership app, no Kafka, no uvicorn.

The membership ASGI app is driven in-process by a minimal ASGI caller (no HTTP client library, so
the figure is the app's own cost), against a private database on the given PostgreSQL, with N
concurrent clients posting injury reports. The lifespan (relay, consumers) is not started:
this measures the intake path alone, what ``bench/e2e.py``'s closed loop found to be the limit.

Variants take layers away, to see what each costs (measured back to back in one run):

- ``full``: the app as it is served;
- ``-correlation``, ``-metrics``, ``-edge``: without that middleware;
- ``bare``: without any of them.

And ``raw``: the same statements the intake path sends, issued with plain asyncpg on a pool of the
same size (no HTTP, no SQLAlchemy, no pydantic): the floor for this database.

    .venv/bin/python -m bench.intake --clients 8 --requests 2000 --variants full,bare,raw
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI
from starlette.types import Message

from bench.harness import DEFAULT_ADMIN_URL, plain_url
from tests.identifiers import identity, luhn_complete

STAFF = [(b"authorization", b"Bearer local-staff-token"), (b"content-type", b"application/json")]
#: Cover from before today is a paper enrolment, which only a supervisor records (issue 17).
SUPERVISOR = [(b"authorization", b"Bearer local-supervisor-token"), (b"content-type", b"application/json")]
VARIANTS = ("full", "-correlation", "-metrics", "-edge", "-tracing", "bare", "raw")


async def call(
    app: FastAPI, method: str, path: str, body: Any = None, *, auth: list[tuple[bytes, bytes]] = STAFF
) -> tuple[int, bytes]:
    """One request straight into the ASGI app: (status, body)."""
    raw = b"" if body is None else json.dumps(body).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [*auth, (b"content-length", str(len(raw)).encode())],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8001),
        "state": {"correlation_id": uuid.uuid4()},  # for variants without the correlation layer
    }
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        await asyncio.Event().wait()  # a client that never disconnects
        raise AssertionError

    status = 0
    chunks: list[bytes] = []

    async def send(message: Message) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    return status, b"".join(chunks)


def _ok(result: tuple[int, bytes], want: int) -> dict[str, Any]:
    status, body = result
    if status != want:
        raise RuntimeError(f"{status}: {body[:300]!r}")
    answer: dict[str, Any] = json.loads(body)
    return answer


async def setup_members(app: FastAPI, count: int) -> list[str]:
    """A grassroots union and ``count`` members with a card and accident cover (as bench/e2e.py)."""
    run = uuid.uuid4().hex[:6]
    parent = None
    for level in ("municipal", "district", "street", "grassroots"):
        body = {"name": f"bench {run} {level}", "level": level, "parent_id": parent}
        parent = _ok(await call(app, "POST", "/v1/unions", body), 201)["union_id"]
    today = date.today()
    members = []
    for i in range(count):
        birth, nid = identity(int(run, 16) * 10_000 + i, female=i % 2 == 1)
        member = _ok(
            await call(
                app,
                "POST",
                "/v1/members",
                {
                    "union_id": parent,
                    "full_name": f"Bench Member {i}",
                    "gender": "female" if i % 2 else "male",
                    "birth_date": birth.isoformat(),
                    "national_id": nid,
                    "joined_on": (today - timedelta(days=900)).isoformat(),
                },
            ),
            201,
        )["member_id"]
        card = {
            "card_number": luhn_complete(f"62{int(run, 16) % 10**6:06d}{i:08d}"),
            "issued_on": (today - timedelta(days=400)).isoformat(),
        }
        _ok(await call(app, "POST", f"/v1/members/{member}/card", card), 201)
        enrol = {
            "plan_code": "accident_injury",
            "shares": 1,
            "starts_on": (today - timedelta(days=90)).isoformat(),
            "paper": {
                "receipt_reference": f"BI-{uuid.uuid4().hex[:12]}",
                "paid_on": (today - timedelta(days=90)).isoformat(),
            },
        }
        _ok(await call(app, "POST", f"/v1/members/{member}/enrollments", enrol, auth=SUPERVISOR), 201)
        members.append(member)
    return members


def report_body() -> dict[str, Any]:
    return {
        "occurred_on": (date.today() - timedelta(days=2)).isoformat(),
        "work_related": False,
        "description": "slipped on the stairs",
        "diagnosis": "ankle sprain",
    }


async def drive(
    one: Callable[[str], Any], members: list[str], total: int, clients: int
) -> tuple[float, list[float]]:
    """(requests per second, latencies in ms) of ``total`` calls from ``clients`` loops."""
    counter = iter(range(total))
    latencies: list[float] = []

    async def client() -> None:
        for i in counter:
            t = time.perf_counter()
            await one(members[i % len(members)])
            latencies.append((time.perf_counter() - t) * 1000)

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    return total / (time.perf_counter() - start), latencies


def strip(app: FastAPI, variant: str) -> FastAPI:
    """Take middleware away before the stack is built (by the dispatch function's or class's name)."""
    drop = {
        "full": set(),
        "-correlation": {"correlation", "CorrelationMiddleware"},
        "-metrics": {"timed", "MetricsMiddleware"},
        "-edge": {"EdgeMiddleware"},
        "-tracing": {"TracingMiddleware"},
        "bare": {
            "correlation",
            "CorrelationMiddleware",
            "timed",
            "MetricsMiddleware",
            "EdgeMiddleware",
            "TracingMiddleware",
        },
    }[variant]

    def name(m: Any) -> str:
        dispatch = m.kwargs.get("dispatch")
        return getattr(dispatch, "__name__", None) or getattr(m.cls, "__name__", "")

    app.user_middleware = [m for m in app.user_middleware if name(m) not in drop]
    app.middleware_stack = None
    return app


@asynccontextmanager
async def private_database(admin_url: str) -> AsyncIterator[str]:
    name = f"bench_intake_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"{admin_url.rpartition('/')[0]}/{name}"
    finally:
        admin = await asyncpg.connect(admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


RAW_STATEMENTS = (
    # What one injury report costs in statements, issued plainly (no HTTP, no ORM): read the
    # member's stream, the edited plan versions, store the details, append (+outbox), project.
    "SELECT * FROM events WHERE stream_id = $1 AND version > 0 ORDER BY version",
    "SELECT code, version FROM plans WHERE version > 0",
)


async def raw_report(pool: asyncpg.Pool, member: str) -> None:
    report_id, event_id = uuid.uuid4(), uuid.uuid4()
    async with pool.acquire() as conn, conn.transaction():
        rows = await conn.fetch(RAW_STATEMENTS[0], member)
        await conn.fetch(RAW_STATEMENTS[1])
        version = len(rows)
        await conn.execute(
            "INSERT INTO injury_details (report_id, member_id, description_enc, diagnosis_enc)"
            " VALUES ($1, $2, $3, $4)",
            report_id,
            uuid.UUID(member),
            "x" * 80,
            "y" * 80,
        )
        await conn.fetch(
            "WITH inserted AS (INSERT INTO events (event_id, stream_type, stream_id, version, event_type,"
            " schema_version, occurred_at, correlation_id, data) VALUES ($1, 'InjuryReport', $2, 1,"
            " 'InjuryReported', 1, now(), $3, $4::jsonb) RETURNING position)"
            " INSERT INTO outbox (position) SELECT position FROM inserted RETURNING position",
            event_id,
            str(report_id),
            uuid.uuid4(),
            json.dumps({"report_id": str(report_id), "member_id": member, "member_version": version}),
        )
        await conn.execute(
            "INSERT INTO injury_reports (report_id, member_id, occurred_on, work_related,"
            " traffic_accident, severity, reported_on, member_version, reported_at)"
            " VALUES ($1, $2, $3, false, false, 'minor', $3, $4, now()) ON CONFLICT DO NOTHING",
            report_id,
            uuid.UUID(member),
            date.today(),
            version,
        )
        await conn.execute(
            "INSERT INTO member_timeline (event_id, member_id, occurred_at, aggregate_type, aggregate_id,"
            " aggregate_version, event_type, data) VALUES ($1, $2, now(), 'InjuryReport', $3, 1,"
            " 'InjuryReported', '{}'::jsonb) ON CONFLICT DO NOTHING",
            event_id,
            uuid.UUID(member),
            str(report_id),
        )


async def main_async(args: argparse.Namespace) -> None:
    from services.membership.app import create_app
    from services.membership.settings import MembershipSettings
    from shared.migrations import upgrade_to_head
    from shared.runtime import ServiceRuntime

    admin_url = plain_url(os.environ.get("DATABASE_URL", DEFAULT_ADMIN_URL))
    variants = [v for v in args.variants.split(",") if v]
    unknown = set(variants) - set(VARIANTS)
    if unknown:
        raise SystemExit(f"unknown variants {sorted(unknown)}; choose from {VARIANTS}")
    async with private_database(admin_url) as url:
        settings = MembershipSettings(
            MEMBERSHIP_DATABASE_URL=url.replace("postgresql://", "postgresql+asyncpg://", 1),
            KAFKA_BOOTSTRAP_SERVERS="127.0.0.1:1",  # never contacted: no lifespan, no relay
        )
        # Never the `make up` database: the settings must have taken the private one.
        assert settings.database_url.endswith(url.rpartition("/")[2]), "not the private database"
        apps = {v: strip(create_app(settings), v) for v in variants if v != "raw"}
        first = next(iter(apps.values()), None) or strip(create_app(settings), "full")
        runtime: ServiceRuntime = first.state.runtime
        await upgrade_to_head(runtime.migrations, settings.database_url, wait_seconds=10)
        members = await setup_members(first, args.members)
        body = report_body()
        pool: asyncpg.Pool | None = None
        if "raw" in variants:
            pool = await asyncpg.create_pool(url, min_size=args.clients, max_size=args.clients, ssl=False)
        print(f"== intake: {args.clients} clients, {args.requests} reports per round, {args.rounds} rounds")
        results: dict[str, list[float]] = {v: [] for v in variants}
        p99: dict[str, list[float]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                if v == "raw":
                    assert pool is not None

                    async def one(member: str, pool: asyncpg.Pool = pool) -> None:
                        await raw_report(pool, member)

                else:
                    app = apps[v]

                    async def one(member: str, app: FastAPI = app) -> None:
                        _ok(await call(app, "POST", f"/v1/members/{member}/injury-reports", body), 202)

                await drive(one, members, min(50, args.requests), args.clients)  # warm-up
                rate, lat = await drive(one, members, args.requests, args.clients)
                results[v].append(rate)
                p99[v].append(statistics.quantiles(lat, n=100)[98])
        print(f"  {'variant':<14}{'reports/s (median)':>20}{'runs':>30}{'p99 ms':>10}")
        for v in variants:
            runs = " ".join(f"{r:.0f}" for r in results[v])
            print(
                f"  {v:<14}{statistics.median(results[v]):>20.0f}{runs:>30}{statistics.median(p99[v]):>10.1f}"
            )
        if pool is not None:
            await pool.close()
        for app in apps.values():
            await app.state.runtime.engine.dispose()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--requests", type=int, default=1000, help="reports per variant per round")
    p.add_argument("--rounds", type=int, default=3, help="variants are interleaved round by round")
    p.add_argument("--members", type=int, default=50)
    p.add_argument("--variants", default=",".join(VARIANTS))
    asyncio.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
