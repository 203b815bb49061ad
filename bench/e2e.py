"""End-to-end benchmark: injury report (HTTP 202) -> both ClaimFiled on claims.events.

Drives the system `make up` started, only through its HTTP APIs, and watches ``claims.events``
with a plain aiokafka consumer. Prints, in one run and side by side:

- latency p50/p95/p99 at a fixed open-loop rate (default 100 reports/s),
- the sustained end-to-end rate and the HTTP intake rate under a closed-loop burst,
- the raw limits measured the same way on the same machine: a plain aiokafka produce->consume
  round trip (acks=all, idempotent) and a plain asyncpg insert+commit.

It also counts what was lost (a 202 without both claims within the grace period) and what was
duplicated (a claim filed under two event ids, or a report with more than two claims), and prints
the CPU each part of the system spent per report in each phase (``bench/cpu.py``).

    make bench-e2e                    # = make up, then .venv/bin/python -m bench.e2e
    .venv/bin/python -m bench.e2e --rate 100 --seconds 20 --burst 3000 --clients 32
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from bench import cpu
from bench.http11 import Http11Pool
from tests.identifiers import identity, luhn_complete

STAFF = {"Authorization": "Bearer local-staff-token"}
SUPERVISOR = {"Authorization": "Bearer local-supervisor-token"}
LOCAL_ADMIN_URL = "postgresql://union_admin:union-admin-local@127.0.0.1:5432/postgres"


@dataclass
class Watch:
    """What the plain consumer saw: when each report's claims arrived, and under which event ids."""

    claims_by_report: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    event_ids_by_claim: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    complete_at: dict[str, float] = field(default_factory=dict)


async def watch_claims(
    kafka: str, topic: str, watch: Watch, ready: asyncio.Event, stop: asyncio.Event
) -> None:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=10
    )
    await consumer.start()
    try:
        partitions = [TopicPartition(topic, p) for p in range(await partition_count(kafka, topic))]
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        for tp in partitions:
            await consumer.position(tp)
        ready.set()
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=50, max_records=5000)
            now = time.perf_counter()
            for records in batch.values():
                for r in records:
                    envelope = json.loads(r.value or b"{}")
                    if envelope.get("event_type") != "ClaimFiled":
                        continue
                    data = envelope["data"]
                    report, claim = data.get("report_id"), data["claim_id"]
                    watch.event_ids_by_claim[claim].add(envelope["event_id"])
                    if report:
                        watch.claims_by_report[report].add(claim)
                        if len(watch.claims_by_report[report]) == 2 and report not in watch.complete_at:
                            watch.complete_at[report] = now
    finally:
        await consumer.stop()


async def partition_count(kafka: str, topic: str) -> int:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        [described] = await admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        await admin.close()


async def setup_members(m: httpx.AsyncClient, count: int, clients: int) -> list[str]:
    """Unions down to a grassroots union, then members with a Jing card and accident cover."""
    parent = None
    run = uuid.uuid4().hex[:6]
    for level in ("municipal", "district", "street", "grassroots"):
        r = await m.post(
            "/v1/unions", json={"name": f"bench {run} {level}", "level": level, "parent_id": parent}
        )
        r.raise_for_status()
        parent = r.json()["union_id"]
    today = date.today()
    members: list[str] = []
    queue = list(range(count))

    async def worker() -> None:
        while queue:
            i = queue.pop()
            birth, nid = identity(int(run, 16) * 10_000 + i, female=i % 2 == 1)
            r = await m.post(
                "/v1/members",
                json={
                    "union_id": parent,
                    "full_name": f"Bench Member {i}",
                    "gender": "female" if i % 2 else "male",
                    "birth_date": birth.isoformat(),
                    "national_id": nid,
                    "joined_on": (today - timedelta(days=900)).isoformat(),
                },
            )
            r.raise_for_status()
            member = r.json()["member_id"]
            card = {
                "card_number": luhn_complete(f"62{int(run, 16) % 10**6:06d}{i:08d}"),
                "issued_on": (today - timedelta(days=400)).isoformat(),
            }
            (await m.post(f"/v1/members/{member}/card", json=card)).raise_for_status()
            enrol = {
                "plan_code": "accident_injury",
                "shares": 1,
                "starts_on": (today - timedelta(days=90)).isoformat(),
                # Cover from before today is a paper enrolment, recorded by a supervisor.
                "paper": {
                    "receipt_reference": f"B-{uuid.uuid4().hex[:12]}",
                    "paid_on": (today - timedelta(days=90)).isoformat(),
                },
            }
            r = await m.post(f"/v1/members/{member}/enrollments", json=enrol, headers=SUPERVISOR)
            r.raise_for_status()
            members.append(member)

    await asyncio.gather(*(worker() for _ in range(clients)))
    return members


async def report(m: Http11Pool, member: str, accepted: dict[str, float]) -> None:
    status, body = await m.post_json(
        f"/v1/members/{member}/injury-reports",
        {
            "occurred_on": (date.today() - timedelta(days=2)).isoformat(),
            "work_related": False,
            "description": "slipped on the stairs",
            "diagnosis": "ankle sprain",
        },
    )
    if status != 202:
        raise RuntimeError(f"report refused: {status} {str(body)[:200]}")
    accepted[body["report_id"]] = time.perf_counter()


def pct(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def settle(watch: Watch, accepted: dict[str, float], grace: float) -> None:
    deadline = time.perf_counter() + grace
    while time.perf_counter() < deadline and any(r not in watch.complete_at for r in accepted):
        await asyncio.sleep(0.05)


@dataclass
class Phase:
    latencies_ms: list[float]
    lost: int
    duplicated: int
    intake_rate: float | None = None
    e2e_rate: float | None = None


def judge(watch: Watch, accepted: dict[str, float]) -> tuple[list[float], int, int]:
    latencies = [(watch.complete_at[r] - t) * 1000 for r, t in accepted.items() if r in watch.complete_at]
    lost = sum(1 for r in accepted if r not in watch.complete_at)
    duplicated = sum(1 for r in accepted if len(watch.claims_by_report.get(r, ())) > 2)
    duplicated += sum(
        1
        for r in accepted
        for c in watch.claims_by_report.get(r, ())
        if len(watch.event_ids_by_claim.get(c, ())) > 1
    )
    return latencies, lost, duplicated


async def open_loop(
    m: Http11Pool, members: list[str], watch: Watch, rate: float, seconds: float, grace: float
) -> Phase:
    accepted: dict[str, float] = {}
    total = int(rate * seconds)
    start = time.perf_counter()
    tasks = []
    for i in range(total):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(report(m, members[i % len(members)], accepted)))
    await asyncio.gather(*tasks)
    await settle(watch, accepted, grace)
    latencies, lost, dup = judge(watch, accepted)
    return Phase(latencies, lost, dup)


async def closed_loop(
    m: Http11Pool, members: list[str], watch: Watch, total: int, clients: int, grace: float
) -> Phase:
    accepted: dict[str, float] = {}
    counter = iter(range(total))
    start = time.perf_counter()

    async def client() -> None:
        for i in counter:
            await report(m, members[i % len(members)], accepted)

    await asyncio.gather(*(client() for _ in range(clients)))
    intake_done = time.perf_counter()
    await settle(watch, accepted, grace)
    latencies, lost, dup = judge(watch, accepted)
    done = [watch.complete_at[r] for r in accepted if r in watch.complete_at]
    e2e = len(done) / (max(done) - start) if done else None
    return Phase(latencies, lost, dup, intake_rate=total / (intake_done - start), e2e_rate=e2e)


async def raw_kafka(
    kafka: str, rate: float, seconds: float, total: int, clients: int
) -> tuple[list[float], float]:
    """Plain aiokafka: produce (acks=all, idempotent) -> a plain consumer sees it. Open loop at
    ``rate`` for latency, then ``total`` sends from ``clients`` concurrent senders for throughput."""
    topic = f"bench.e2e.raw.{uuid.uuid4().hex[:8]}"
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True, linger_ms=0)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka, enable_auto_commit=False, group_id=None, fetch_max_wait_ms=10
    )
    await producer.start()
    await consumer.start()
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])
        await asyncio.sleep(1)
        parts = [TopicPartition(topic, p) for p in range(3)]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        sent: dict[bytes, float] = {}
        seen: dict[bytes, float] = {}
        stop = asyncio.Event()

        async def consume() -> None:
            while not stop.is_set():
                batch = await consumer.getmany(timeout_ms=50, max_records=5000)
                now = time.perf_counter()
                for records in batch.values():
                    for r in records:
                        seen.setdefault(r.value or b"", now)

        reader = asyncio.create_task(consume())
        n = int(rate * seconds)
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            key = f"o{i}".encode()
            sent[key] = time.perf_counter()
            await producer.send(topic, key, key=key)
        while len([k for k in sent if k in seen]) < n and time.perf_counter() - start < seconds + 10:
            await asyncio.sleep(0.02)
        latencies = [(seen[k] - t) * 1000 for k, t in sent.items() if k in seen]

        counter = iter(range(total))
        burst_start = time.perf_counter()

        async def sender() -> None:
            for i in counter:
                key = f"c{i}".encode()
                await producer.send_and_wait(topic, key, key=key)

        await asyncio.gather(*(sender() for _ in range(clients)))
        while sum(1 for k in seen if k.startswith(b"c")) < total and time.perf_counter() - burst_start < 60:
            await asyncio.sleep(0.02)
        burst_rate = total / (time.perf_counter() - burst_start)
        stop.set()
        await reader
        await admin.delete_topics([topic])
        return latencies, burst_rate
    finally:
        await admin.close()
        await producer.stop()
        await consumer.stop()


async def raw_postgres(admin_url: str, total: int, clients: int) -> tuple[list[float], float]:
    """Plain asyncpg: one INSERT + COMMIT per operation; latency one at a time, rate with ``clients``."""
    name = f"bench_e2e_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(admin_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = admin_url.rsplit("/", 1)[0] + f"/{name}"
    try:
        pool = await asyncpg.create_pool(url, min_size=clients, max_size=clients)
        async with pool.acquire() as c:
            await c.execute("CREATE TABLE t (id uuid PRIMARY KEY, body jsonb NOT NULL)")
        body = json.dumps({"report": "x" * 200})

        async def one(c: asyncpg.Connection) -> None:
            async with c.transaction():
                await c.execute("INSERT INTO t VALUES ($1, $2::jsonb)", uuid.uuid4(), body)

        latencies = []
        async with pool.acquire() as c:
            for _ in range(500):
                t = time.perf_counter()
                await one(c)
                latencies.append((time.perf_counter() - t) * 1000)
        counter = iter(range(total))
        start = time.perf_counter()

        async def worker() -> None:
            async with pool.acquire() as c:
                for _ in counter:
                    await one(c)

        await asyncio.gather(*(worker() for _ in range(clients)))
        rate = total / (time.perf_counter() - start)
        await pool.close()
        return latencies, rate
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


def fmt(x: float | None, unit: str = "") -> str:
    return "n/a" if x is None or x != x else f"{x:,.0f}{unit}"


async def main_async(args: argparse.Namespace) -> int:
    watch = Watch()
    stop, ready = asyncio.Event(), asyncio.Event()
    watcher = asyncio.create_task(watch_claims(args.kafka, args.claims_topic, watch, ready, stop))
    await asyncio.wait_for(ready.wait(), timeout=30)
    # Idle connections expire on the client before uvicorn closes them (a race that ends in a
    # ReadError on the reused connection).
    limits = httpx.Limits(
        max_connections=args.clients + 8, max_keepalive_connections=args.clients + 8, keepalive_expiry=2
    )
    async with httpx.AsyncClient(base_url=args.membership, headers=STAFF, timeout=60, limits=limits) as m:
        print(f"setup: {args.members} members with a Jing card and accident cover ...", flush=True)
        t = time.perf_counter()
        members = await setup_members(m, args.members, args.clients)
        print(f"setup took {time.perf_counter() - t:.1f}s", flush=True)
        await asyncio.sleep(2)  # let claims' coverage model catch up before timing anything
    reports = Http11Pool(args.membership, STAFF)
    try:
        print(f"open loop: {args.rate:.0f} reports/s for {args.seconds:.0f}s ...", flush=True)
        cpu_before = cpu.snapshot()
        steady = await open_loop(reports, members, watch, args.rate, args.seconds, args.grace)
        cpu_steady = cpu.snapshot()
        print(f"closed loop: {args.burst} reports from {args.clients} clients ...", flush=True)
        burst = await closed_loop(reports, members, watch, args.burst, args.clients, args.grace)
        cpu_burst = cpu.snapshot()
    finally:
        await reports.close()
    stop.set()
    await watcher
    print("raw limits: plain aiokafka and plain asyncpg ...", flush=True)
    kafka_lat, kafka_rate = await raw_kafka(
        args.kafka, args.rate, min(args.seconds, 10), args.burst, args.clients
    )
    pg_lat, pg_rate = await raw_postgres(args.admin_url, args.burst, args.clients)

    def row(label: str, latencies: Sequence[float] | None = None, rate: float | None = None) -> None:
        cells = [fmt(pct(latencies, q), " ms") if latencies is not None else "" for q in (50, 95, 99)]
        print(f"{label:48} {cells[0]:>9} {cells[1]:>9} {cells[2]:>9} {fmt(rate) if rate else '':>9}")

    print()
    print(f"End to end: POST injury report (202) -> both ClaimFiled on {args.claims_topic}")
    print(f"{'':48} {'p50':>9} {'p95':>9} {'p99':>9} {'rate/s':>9}")
    row(f"ours, open loop {args.rate:.0f}/s", steady.latencies_ms)
    row(f"ours, closed loop {args.clients} clients, end to end", burst.latencies_ms, burst.e2e_rate)
    row(f"ours, HTTP intake ({args.clients} clients)", None, burst.intake_rate)
    row(f"raw aiokafka produce->consume, open loop {args.rate:.0f}/s", kafka_lat)
    row(f"raw aiokafka send_and_wait, {args.clients} senders", None, kafka_rate)
    row("raw asyncpg insert+commit, one at a time", pg_lat)
    row(f"raw asyncpg insert+commit, {args.clients} connections", None, pg_rate)
    lost, dup = steady.lost + burst.lost, steady.duplicated + burst.duplicated
    opened, burst_n = len(steady.latencies_ms) + steady.lost, len(burst.latencies_ms) + burst.lost
    print_cpu(cpu.per_report(cpu_before, cpu_steady, opened), cpu.per_report(cpu_steady, cpu_burst, burst_n))
    print(f"\nreports: {opened} open loop + {burst_n} burst; lost {lost}, duplicated {dup}")
    print("targets: p99 <= 100 ms at 100/s; >= 500 reports/s sustained; 0 lost, 0 duplicated")
    print(f"machine: {os.cpu_count()} cores shared by every service, PostgreSQL, Kafka and this client")
    return 1 if lost or dup else 0


def print_cpu(steady: dict[str, float], burst: dict[str, float]) -> None:
    """CPU ms per report by part of the system (bench/cpu.py): whose work bounds the rate."""
    if not steady and not burst:
        return
    print("\nCPU per report (ms, user + system, from /proc; 'client' is this benchmark)")
    print(f"{'':20} {'open loop':>10} {'burst':>10}")
    for part in dict.fromkeys([*burst, *steady]):
        print(f"{part:20} {steady.get(part, 0.0):10.2f} {burst.get(part, 0.0):10.2f}")
    total_s, total_b = sum(steady.values()), sum(burst.values())
    print(f"{'total':20} {total_s:10.2f} {total_b:10.2f}")
    cores = os.cpu_count() or 1
    if total_b:
        print(
            f"CPU-bound ceiling at the burst's cost: {cores} cores x 1000 / {total_b:.1f} ms "
            f"= {cores * 1000 / total_b:.0f} reports/s"
        )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--membership", default=os.environ.get("MEMBERSHIP_URL", "http://127.0.0.1:8001"))
    p.add_argument("--kafka", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    p.add_argument("--claims-topic", default=os.environ.get("CLAIMS_TOPIC", "claims.events"))
    p.add_argument(
        "--admin-url",
        default=(
            os.environ.get("DATABASE_URL")
            or "postgresql://union_admin:union-admin-local@127.0.0.1:5432/postgres"
        ).replace("+asyncpg", ""),
    )
    p.add_argument("--members", type=int, default=200)
    p.add_argument("--rate", type=float, default=100.0)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--burst", type=int, default=3000)
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--grace", type=float, default=60.0, help="seconds to wait for the last claims")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    raise SystemExit(asyncio.run(main_async(parse_args(argv))))


if __name__ == "__main__":
    main()
