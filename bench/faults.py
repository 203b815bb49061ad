"""Fault campaign: injury reports at a steady rate while processes die and Kafka and PostgreSQL
restart; then count what survived.

It runs on a PRIVATE PostgreSQL cluster and a PRIVATE Kafka broker (fresh, on free loopback
ports, in a temporary directory), with every service as a real process (`python -m services.X`),
so that killing and restarting them never touches the system `make up` runs. Faults come at
moments drawn from a seeded RNG (``--seed`` reproduces the schedule):

- SIGKILL of each service process in turn (HTTP, relay and consumers live in it), restarted;
- Kafka stopped with SIGTERM or SIGKILL, restarted;
- PostgreSQL stopped with ``-m fast`` or ``-m immediate`` (crash), restarted;
- a second claims process started (a consumer-group rebalance) and SIGKILLed;
- malformed and unknown-type messages injected on every consumed topic.

Then it waits for quiet and counts, from the public HTTP APIs and from Kafka with a plain
consumer (and each store's ``events`` table): reports accepted vs decided, claims expected by
the rules vs found, duplicates, events on Kafka vs in the store per aggregate (no gap, no
reorder of first deliveries), dead letters and why, and the time from each fault to recovery.
It prints one table, writes it as JSON, and exits 1 on any loss, duplicate or disorder.

    make faults                                   # 10,000 reports, default schedule
    .venv/bin/python -m bench.faults --reports 300 --rate 10 --seed 7 --out /tmp/faults.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from tests.e2e.processes import ServiceProcess
from tests.identifiers import identity, luhn_complete
from tests.kafka_broker import PrivateKafka, free_port

REPO = Path(__file__).resolve().parents[1]
STAFF = {"Authorization": "Bearer local-staff-token"}
SUPERVISOR = {"Authorization": "Bearer local-supervisor-token"}
ACCIDENT = "accident_injury"
CARD = "card_non_work_accident"
#: Services in the campaign: (name, the topics it consumes).
SERVICES: dict[str, tuple[str, ...]] = {
    "membership": ("claims.events",),
    "claims": ("membership.events",),
    "counseling": ("membership.events",),
    "mediation": ("membership.events",),
}
PROBE_HEADER = "fault_probe"
FAULT_KINDS = (
    "kill_membership",
    "kill_claims",
    "kill_counseling",
    "kill_mediation",
    "kafka_sigterm",
    "kafka_sigkill",
    "postgres_fast",
    "postgres_immediate",
    "claims_replica",
    "inject_malformed",
)


# --- the private infrastructure ------------------------------------------------------------------


class PrivatePostgres:
    """A throw-away PostgreSQL cluster (Debian binaries) on a free loopback port, trust auth.

    ``standby_of``: instead of a fresh initdb, a streaming standby of that (running) cluster,
    copied with ``pg_basebackup -R`` (bench/failover.py). ``settings`` are appended to its
    postgresql.conf (after the copy, so a standby's own settings win over its primary's)."""

    def __init__(
        self,
        root: Path,
        name: str = "postgres",
        *,
        standby_of: PrivatePostgres | None = None,
        settings: dict[str, str] | None = None,
    ) -> None:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
        if not versions:
            raise RuntimeError("PostgreSQL binaries missing: run `deploy/local/infra.sh up` first")
        self.bin = versions[-1].parent
        self.port = free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True)
        self.data = self.dir / "data"
        self.as_owner: list[str] = []
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the Debian postgres user
            root.chmod(0o755)
            shutil.chown(self.dir, "postgres", "postgres")
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        if standby_of is None:
            self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8")
        else:
            # -R writes standby.signal and primary_conninfo; -X stream copies the WAL it needs.
            self._run(
                "pg_basebackup",
                *("-h", "127.0.0.1", "-p", str(standby_of.port), "-U", "postgres"),
                *("-D", str(self.data), "-R", "-X", "stream", "-c", "fast"),
            )
        if settings:
            # Appending keeps the file's owner (root may write it; the server only reads it).
            with (self.data / "postgresql.conf").open("a") as conf:
                conf.writelines(f"{k} = '{v}'\n" for k, v in settings.items())

    def _run(self, tool: str, *args: str) -> None:
        subprocess.run(
            [*self.as_owner, str(self.bin / tool), *args], check=True, capture_output=True, timeout=120
        )

    def postmaster_pid(self) -> int | None:
        """The running postmaster's pid (first line of postmaster.pid), or None."""
        try:
            return int((self.data / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def start(self) -> None:
        options = f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.dir} -c max_connections=200"
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.dir / "log"), "-o", options, "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{database}"

    async def create_databases(self, names: list[str]) -> None:
        conn = await asyncpg.connect(self.url("postgres"))
        try:
            for name in names:
                await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()


def kill_kafka(kafka: PrivateKafka) -> None:
    """SIGKILL the private broker (no clean shutdown: its logs recover on the next start)."""
    if kafka.proc and kafka.proc.poll() is None:
        kafka.proc.kill()
        kafka.proc.wait()
    kafka.proc = None
    log = kafka.dir / "kafka.log"
    log.rename(kafka.dir / f"kafka.{time.time_ns()}.log")


# --- the run ---------------------------------------------------------------------------------------


@dataclass
class MemberPlan:
    member_id: str
    card: bool
    enrolled: bool


@dataclass
class Report:
    key: str
    member: MemberPlan
    work_related: bool
    report_id: str | None = None
    accepted_at: float | None = None
    refused: str | None = None


@dataclass
class Fault:
    kind: str
    at: float
    restored_at: float | None = None
    detail: str = ""
    first_202_after_s: float | None = None
    first_claim_after_s: float | None = None


@dataclass
class Campaign:
    args: argparse.Namespace
    root: Path
    postgres: PrivatePostgres
    kafka: PrivateKafka
    env: dict[str, str]
    procs: dict[str, ServiceProcess] = field(default_factory=dict)
    faults: list[Fault] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    unexpected_exits: list[str] = field(default_factory=list)
    probes_sent: Counter[str] = field(default_factory=Counter)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    all_kinds_done: asyncio.Event = field(default_factory=asyncio.Event)
    killing: set[str] = field(default_factory=set)
    #: The services under test, with the topics each consumes (bench/failover.py runs two).
    services: dict[str, tuple[str, ...]] = field(default_factory=lambda: dict(SERVICES))

    def url(self, name: str) -> str:
        return self.procs[name].url


def service_env(postgres: PrivatePostgres, kafka: PrivateKafka) -> dict[str, str]:
    env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "UNION_LOG_LEVEL": "WARNING"}
    for name in SERVICES:
        env[f"{name.upper()}_DATABASE_URL"] = postgres.url(name).replace(
            "postgresql://", "postgresql+asyncpg://"
        )
    return env


async def start_service(c: Campaign, name: str) -> None:
    proc = c.procs.get(name) or ServiceProcess(name, c.env, c.root)
    c.procs[name] = proc
    await asyncio.to_thread(proc.start, 120.0)


def sigkill(proc: ServiceProcess) -> None:
    if proc.proc is not None and proc.proc.poll() is None:
        proc.proc.send_signal(signal.SIGKILL)
        proc.proc.wait()


async def supervise(c: Campaign) -> None:
    """Like an orchestrator: a service that exits on its own is noted and started again."""
    while not c.stop.is_set():
        for name, proc in list(c.procs.items()):
            if name in c.killing or proc.proc is None:
                continue
            code = proc.proc.poll()
            if code is not None:
                c.unexpected_exits.append(f"{name} exited with {code} at +{time.time() - T0:.0f}s")
                try:
                    await start_service(c, name)
                except RuntimeError as exc:
                    c.unexpected_exits.append(f"{name} restart failed: {str(exc)[:200]}")
        await asyncio.sleep(1.0)


# --- setup through HTTP ----------------------------------------------------------------------------


async def post_until(
    client: httpx.AsyncClient,
    url: str,
    body: dict[str, Any],
    key: str,
    deadline: float,
    headers: dict[str, str] | None = None,
) -> httpx.Response | None:
    """POST with an Idempotency-Key until the service answers for real (not 5xx, not unreachable)."""
    while time.monotonic() < deadline:
        try:
            r = await client.post(url, json=body, headers={**(headers or {}), "Idempotency-Key": key})
            if r.status_code < 500:
                return r
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.5)
    return None


async def setup_members(c: Campaign, rng: random.Random, count: int) -> list[MemberPlan]:
    today = date.today()
    run = rng.randrange(10**6)
    async with httpx.AsyncClient(base_url=c.url("membership"), headers=STAFF, timeout=20) as m:
        parent = None
        for level in ("municipal", "district", "street", "grassroots"):
            body = {"name": f"faults {run} {level}", "level": level, "parent_id": parent}
            r = await post_until(m, "/v1/unions", body, f"u-{run}-{level}", time.monotonic() + 60)
            assert r is not None and r.status_code == 201, r and r.text
            parent = r.json()["union_id"]
        # 70 % card + accident cover, 20 % card only, 10 % neither (enrolling needs a card).
        plans = [(i, i % 10 < 9, i % 10 < 7) for i in range(count)]
        members: list[MemberPlan] = []
        queue = list(plans)

        async def worker() -> None:
            while queue:
                i, card, enrolled = queue.pop()
                deadline = time.monotonic() + 120
                birth, nid = identity(run * 10_000 + i, female=i % 2 == 1)
                body = {
                    "union_id": parent,
                    "full_name": f"Faults Member {i}",
                    "gender": "female" if i % 2 else "male",
                    "birth_date": birth.isoformat(),
                    "national_id": nid,
                    "joined_on": (today - timedelta(days=900)).isoformat(),
                }
                r = await post_until(m, "/v1/members", body, f"m-{run}-{i}", deadline)
                assert r is not None and r.status_code == 201, r and r.text
                member = r.json()["member_id"]
                if card:
                    body = {
                        "card_number": luhn_complete(f"62{run:06d}{i:07d}"),
                        "issued_on": (today - timedelta(days=400)).isoformat(),
                    }
                    r = await post_until(m, f"/v1/members/{member}/card", body, f"c-{member}", deadline)
                    assert r is not None and r.status_code == 201, r and r.text
                if enrolled:
                    body = {
                        "plan_code": ACCIDENT,
                        "shares": 1,
                        "starts_on": (today - timedelta(days=200)).isoformat(),
                        # Cover from before today: a paper enrolment, recorded by a supervisor.
                        "paper": {
                            "receipt_reference": f"F-{run}-{i}",
                            "paid_on": (today - timedelta(days=200)).isoformat(),
                        },
                    }
                    r = await post_until(
                        m, f"/v1/members/{member}/enrollments", body, f"e-{member}", deadline, SUPERVISOR
                    )
                    assert r is not None and r.status_code == 201, r and r.text
                members.append(MemberPlan(member, card, enrolled))

        await asyncio.gather(*(worker() for _ in range(8)))
    return members


# --- load and faults -------------------------------------------------------------------------------


async def send_report(
    c: Campaign, client: httpx.AsyncClient, report: Report, limit: asyncio.Semaphore
) -> None:
    body = {
        "occurred_on": (date.today() - timedelta(days=3)).isoformat(),
        "work_related": report.work_related,
        "description": "fell from a ladder",
        "diagnosis": "wrist fracture",
    }
    url = f"/v1/members/{report.member.member_id}/injury-reports"
    async with limit:
        r = await post_until(client, url, body, report.key, time.monotonic() + c.args.retry_seconds)
    if r is None:
        return  # unconfirmed: asked again once the system is quiet
    if r.status_code == 202:
        report.report_id = r.json()["report_id"]
        report.accepted_at = time.time()
    else:
        report.refused = f"{r.status_code} {r.text[:200]}"


async def drive(c: Campaign, members: list[MemberPlan], rng: random.Random) -> None:
    limit = asyncio.Semaphore(64)
    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=c.url("membership"), headers=STAFF, timeout=10) as client:
        i = 0
        # At least --reports; more (at the same rate, up to three times as many) while some fault
        # kind has not happened yet, so that a short run still meets every fault under load.
        while i < c.args.reports or (not c.all_kinds_done.is_set() and i < 3 * c.args.reports):
            due = start + i / c.args.rate
            if (pause := due - time.monotonic()) > 0:
                await asyncio.sleep(pause)
            report = Report(f"r-{c.args.seed}-{i}", rng.choice(members), rng.random() < 0.2)
            c.reports.append(report)
            tasks.append(asyncio.create_task(send_report(c, client, report, limit)))
            i += 1
        await asyncio.gather(*tasks)


async def inject(c: Campaign) -> str:
    """One garbage value, one well-formed envelope of an unknown type, one envelope missing its
    fields, on every consumed topic: the first and third must be dead-lettered, the second skipped."""
    producer = AIOKafkaProducer(bootstrap_servers=c.kafka.bootstrap, enable_idempotence=True, acks="all")
    await producer.start()
    try:
        topics = sorted({t for consumed in SERVICES.values() for t in consumed})
        for topic in topics:
            probe = str(uuid.uuid4())
            unknown = {
                "event_id": str(uuid.uuid4()),
                "event_type": "FaultProbeUnknownType",
                "schema_version": 1,
                "aggregate_type": "FaultProbe",
                "aggregate_id": probe,
                "aggregate_version": 1,
                "occurred_at": "2026-01-01T00:00:00Z",
                "producer": "faults",
                "correlation_id": str(uuid.uuid4()),
                "causation_id": None,
                "data": {},
            }
            values = {
                "garbage": b"\x00\xffnot json at all",
                "unknown_type": json.dumps(unknown).encode(),
                "missing_fields": json.dumps({"event_type": "MemberJoined", "data": {}}).encode(),
            }
            for kind, value in values.items():
                await producer.send_and_wait(
                    topic, value, key=probe.encode(), headers=[(PROBE_HEADER, kind.encode())]
                )
                c.probes_sent[f"{topic}:{kind}"] += 1
        return ", ".join(topics)
    finally:
        await producer.stop()


async def run_fault(c: Campaign, kind: str, rng: random.Random) -> Fault:
    fault = Fault(kind, time.time())
    if kind.startswith("kill_"):
        name = kind.removeprefix("kill_")
        c.killing.add(name)
        try:
            sigkill(c.procs[name])
            await asyncio.sleep(rng.uniform(0.2, 3.0))
            await start_service(c, name)
        finally:
            c.killing.discard(name)
    elif kind.startswith("kafka_"):
        if kind == "kafka_sigkill":
            await asyncio.to_thread(kill_kafka, c.kafka)
        else:
            await asyncio.to_thread(c.kafka.stop)
        down = rng.uniform(1.0, 8.0)
        fault.detail = f"down {down:.1f}s"
        await asyncio.sleep(down)
        await asyncio.to_thread(c.kafka.start, 120.0)
    elif kind.startswith("postgres_"):
        await asyncio.to_thread(c.postgres.stop, kind.removeprefix("postgres_"))
        down = rng.uniform(1.0, 8.0)
        fault.detail = f"down {down:.1f}s"
        await asyncio.sleep(down)
        await asyncio.to_thread(c.postgres.start)
    elif kind == "claims_replica":
        replica = ServiceProcess("claims", c.env, c.root)
        replica.log = c.root / "claims-replica.log"
        await asyncio.to_thread(replica.start, 120.0)
        up = rng.uniform(3.0, 12.0)
        fault.detail = f"replica up {up:.1f}s"
        await asyncio.sleep(up)
        sigkill(replica)
    elif kind == "inject_malformed":
        fault.detail = await inject(c)
    fault.restored_at = time.time()
    return fault


async def chaos(c: Campaign, rng: random.Random, kinds: list[str]) -> None:
    """Faults one after another at seeded moments, every kind in turn (shuffled per round)."""
    await asyncio.sleep(rng.uniform(*c.args.gap))
    round_: list[str] = []
    while not c.stop.is_set():
        if not round_:
            round_ = list(kinds)
            rng.shuffle(round_)
        kind = round_.pop()
        c.faults.append(await run_fault(c, kind, rng))
        if set(kinds) <= {f.kind for f in c.faults}:
            c.all_kinds_done.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(c.stop.wait(), rng.uniform(*c.args.gap))


# --- counting ----------------------------------------------------------------------------------


async def confirm_unconfirmed(c: Campaign) -> None:
    """Ask again, with the same Idempotency-Key, about every report whose answer never came."""
    limit = asyncio.Semaphore(16)
    async with httpx.AsyncClient(base_url=c.url("membership"), headers=STAFF, timeout=20) as client:
        await asyncio.gather(
            *(
                send_report(c, client, r, limit)
                for r in c.reports
                if r.report_id is None and r.refused is None
            )
        )


async def read_topic(bootstrap: str, topic: str) -> list[Any]:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        described = await admin.describe_topics([topic])
    finally:
        await admin.close()
    if not described or described[0].get("error_code"):
        return []
    partitions = [TopicPartition(topic, p["partition"]) for p in described[0]["partitions"]]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False, group_id=None)
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        records: list[Any] = []
        while [tp for tp in partitions if await consumer.position(tp) < ends[tp]]:
            for batch in (await consumer.getmany(timeout_ms=1000, max_records=10_000)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def wait_for_quiet(c: Campaign, timeout: float) -> float:
    """Until every outbox is empty and every accepted report has a decision at claims."""
    start = time.monotonic()
    accepted = [r for r in c.reports if r.report_id]
    async with httpx.AsyncClient(base_url=c.url("claims"), headers=STAFF, timeout=20) as client:
        while time.monotonic() - start < timeout:
            outboxes = 0
            for name in c.services:
                conn = await asyncpg.connect(c.postgres.url(name))
                try:
                    outboxes += await conn.fetchval("SELECT count(*) FROM outbox")
                finally:
                    await conn.close()
            conn = await asyncpg.connect(c.postgres.url("claims"))
            try:
                decided = await conn.fetchval(
                    "SELECT count(*) FROM report_decisions WHERE report_id = ANY($1::uuid[])",
                    [r.report_id for r in accepted],
                )
            finally:
                await conn.close()
            if outboxes == 0 and decided == len(accepted):
                r = await client.get("/readyz")
                if r.status_code == 200:
                    break
            await asyncio.sleep(2.0)
    return time.monotonic() - start


def expected_claims(report: Report) -> set[tuple[str, str]]:
    """The rules, written independently of the claims service: accident cover pays for any
    accident (work-related or not), the Jing card only for non-work accidents."""
    expected = set()
    if report.member.enrolled:
        expected.add((ACCIDENT, "paid"))
    if report.member.card and not report.work_related:
        expected.add((CARD, "card"))
    return expected


async def count(c: Campaign) -> dict[str, Any]:
    result: dict[str, Any] = {}
    accepted = [r for r in c.reports if r.report_id]
    result["reports_sent"] = len(c.reports)
    result["reports_accepted"] = len(accepted)
    result["reports_refused"] = Counter((r.refused or "")[:3] for r in c.reports if r.refused)
    result["reports_unconfirmed"] = sum(1 for r in c.reports if r.report_id is None and r.refused is None)

    # From the public HTTP API: what each report led to.
    limit = asyncio.Semaphore(32)
    decisions: dict[str, dict[str, Any]] = {}
    async with httpx.AsyncClient(base_url=c.url("claims"), headers=STAFF, timeout=20) as client:

        async def fetch(report_id: str) -> None:
            async with limit:
                r = await client.get(f"/v1/reports/{report_id}")
            if r.status_code == 200:
                decisions[report_id] = r.json()

        await asyncio.gather(*(fetch(str(r.report_id)) for r in accepted))
    undecided = [
        r for r in accepted if decisions.get(str(r.report_id), {}).get("state") in (None, "pending_coverage")
    ]
    missing = extra = duplicate = 0
    claims_expected = claims_found = 0
    for r in accepted:
        found = [
            (cl["plan_code"], cl["benefit"]) for cl in decisions.get(str(r.report_id), {}).get("claims", [])
        ]
        want = expected_claims(r)
        claims_expected += len(want)
        claims_found += len(found)
        counted = Counter(found)
        duplicate += sum(n - 1 for n in counted.values() if n > 1)
        missing += len(want - set(counted))
        extra += len(set(counted) - want)
    result |= {
        "reports_undecided": len(undecided),
        "claims_expected": claims_expected,
        "claims_found": claims_found,
        "claims_missing": missing,
        "claims_unexpected": extra,
        "claims_duplicated": duplicate,
    }

    # Kafka vs each store.
    topics: dict[str, Any] = {}
    for name in c.services:
        topic = f"{name}.events"
        records = await read_topic(c.kafka.bootstrap, topic)
        conn = await asyncpg.connect(c.postgres.url(name))
        try:
            stored = await conn.fetch("SELECT event_id, stream_id, version FROM events ORDER BY position")
        finally:
            await conn.close()
        store_ids = {str(s["event_id"]) for s in stored}
        first_seen: dict[str, list[int]] = defaultdict(list)
        seen_ids: set[str] = set()
        #: (stream, version) -> the event ids Kafka carries for it: two means a version was reused
        #: (a store that lost its tail appending again over events already published).
        slots: dict[tuple[str, int], set[str]] = defaultdict(set)
        redelivered = probes = 0
        for rec in records:
            if any(k == PROBE_HEADER for k, _ in rec.headers or ()):
                probes += 1
                continue
            envelope = json.loads(rec.value)
            if envelope["event_id"] in seen_ids:
                redelivered += 1
                continue
            seen_ids.add(envelope["event_id"])
            slots[(envelope["aggregate_id"], envelope["aggregate_version"])].add(envelope["event_id"])
            first_seen[envelope["aggregate_id"]].append(envelope["aggregate_version"])
        disorder = sum(1 for versions in first_seen.values() if versions != list(range(1, len(versions) + 1)))
        per_stream: dict[str, int] = defaultdict(int)
        gaps = 0
        for s in stored:
            per_stream[s["stream_id"]] += 1
            if s["version"] != per_stream[s["stream_id"]]:
                gaps += 1
        topics[topic] = {
            "in_store": len(store_ids),
            "on_kafka": len(seen_ids),
            "redelivered": redelivered,
            "store_not_on_kafka": len(store_ids - seen_ids),
            "kafka_not_in_store": len(seen_ids - store_ids),
            "aggregates_out_of_order": disorder,
            "store_version_gaps": gaps,
            "kafka_versions_reused": sum(1 for ids in slots.values() if len(ids) > 1),
            "probes": probes,
        }
        if name == "membership":
            reported = {
                json.loads(rec.value)["data"].get("report_id")
                for rec in records
                if not any(k == PROBE_HEADER for k, _ in rec.headers or ())
                and json.loads(rec.value)["event_type"] == "InjuryReported"
            }
            result["accepted_without_event"] = sum(1 for r in accepted if r.report_id not in reported)
    result["topics"] = topics

    dead: Counter[str] = Counter()
    unexpected_dead: list[str] = []
    for consumed in sorted({t for ts in c.services.values() for t in ts}):
        for rec in await read_topic(c.kafka.bootstrap, f"{consumed}.dlq"):
            headers = {k: v.decode(errors="replace") for k, v in rec.headers or ()}
            probe = headers.get(PROBE_HEADER)
            dead[f"{consumed}:{probe or 'REAL EVENT'}"] += 1
            if probe in (None, "unknown_type"):
                unexpected_dead.append(f"{consumed}: {headers.get('dlq_error', '')[:160]}")
    result["dead_letters"] = dict(dead)
    result["dead_letters_unexpected"] = unexpected_dead
    # Each consumer group of a topic dead-letters a malformed probe on its own.
    groups = Counter(t for consumed in c.services.values() for t in consumed)
    sent_bad = sum(
        n * groups[k.split(":")[0]] for k, n in c.probes_sent.items() if not k.endswith(":unknown_type")
    )
    result["probes_expected_in_dlq"] = sent_bad
    result["probes_in_dlq"] = sum(
        n for k, n in dead.items() if not k.endswith(":REAL EVENT") and not k.endswith(":unknown_type")
    )
    return result


def recovery_times(c: Campaign, claim_times: list[tuple[float, str]]) -> None:
    """Per fault: how long intake stalled (the first 202 after the fault began), and how long
    after the fault ended the pipeline was whole again (the first ClaimFiled on Kafka for a
    report accepted after that moment)."""
    accepted = sorted((r.accepted_at, r.report_id) for r in c.reports if r.accepted_at and r.report_id)
    first_claim: dict[str, float] = {}
    for ts, report_id in claim_times:
        first_claim.setdefault(report_id, ts)
    for f in c.faults:
        end = f.restored_at or f.at
        began = [t for t, _ in accepted if t >= f.at]
        if began:
            f.first_202_after_s = round(began[0] - f.at, 2)
        after = [rid for t, rid in accepted if t >= end][:200]
        claims = [first_claim[rid] for rid in after if rid in first_claim]
        if claims:
            f.first_claim_after_s = round(min(claims) - end, 2)


async def claim_times(c: Campaign) -> list[tuple[float, str]]:
    times = []
    for rec in await read_topic(c.kafka.bootstrap, "claims.events"):
        if any(k == PROBE_HEADER for k, _ in rec.headers or ()):
            continue
        envelope = json.loads(rec.value)
        if envelope["event_type"] == "ClaimFiled" and envelope["data"].get("report_id"):
            times.append((rec.timestamp / 1000, envelope["data"]["report_id"]))
    return times


def verdict(result: dict[str, Any]) -> list[str]:
    problems = []
    for key in (
        "reports_undecided",
        "reports_unconfirmed",
        "claims_missing",
        "claims_unexpected",
        "claims_duplicated",
        "accepted_without_event",
    ):
        if result.get(key):
            problems.append(f"{key}: {result[key]}")
    for topic, t in result["topics"].items():
        for key in (
            "store_not_on_kafka",
            "kafka_not_in_store",
            "aggregates_out_of_order",
            "store_version_gaps",
            "kafka_versions_reused",
        ):
            if t[key]:
                problems.append(f"{topic} {key}: {t[key]}")
    if result["dead_letters_unexpected"]:
        problems.append(f"unexpected dead letters: {len(result['dead_letters_unexpected'])}")
    if result["probes_in_dlq"] != result["probes_expected_in_dlq"]:
        problems.append(
            f"malformed probes dead-lettered {result['probes_in_dlq']} of {result['probes_expected_in_dlq']}"
        )
    if result["unexpected_exits"]:
        problems.append(f"services exited on their own: {len(result['unexpected_exits'])}")
    if result["reports_refused"]:
        problems.append(f"reports refused: {dict(result['reports_refused'])}")
    return problems


def print_table(result: dict[str, Any]) -> None:
    rows = [
        ("seed", result["seed"]),
        ("duration (drive / quiet)", f"{result['drive_seconds']:.0f} s / {result['quiet_seconds']:.0f} s"),
        ("reports sent / accepted (202)", f"{result['reports_sent']} / {result['reports_accepted']}"),
        (
            "reports unconfirmed / refused",
            f"{result['reports_unconfirmed']} / {sum(result['reports_refused'].values())}",
        ),
        ("accepted with a decision", result["reports_accepted"] - result["reports_undecided"]),
        ("accepted without InjuryReported on Kafka", result.get("accepted_without_event")),
        ("claims expected / found", f"{result['claims_expected']} / {result['claims_found']}"),
        (
            "claims missing / unexpected / duplicated",
            f"{result['claims_missing']} / {result['claims_unexpected']} / {result['claims_duplicated']}",
        ),
    ]
    for topic, t in result["topics"].items():
        rows.append(
            (
                f"{topic}: store / kafka (redelivered)",
                f"{t['in_store']} / {t['on_kafka']} ({t['redelivered']})",
            )
        )
        rows.append(
            (
                f"{topic}: lost / phantom / out of order / gaps",
                " / ".join(
                    str(t[k]) for k in ("store_not_on_kafka", "kafka_not_in_store", "aggregates_out_of_order")
                )
                + f" / {t['store_version_gaps']}",
            )
        )
    rows.append(
        ("dead letters", ", ".join(f"{k}={v}" for k, v in sorted(result["dead_letters"].items())) or "none")
    )
    rows.append(("services exited on their own", len(result["unexpected_exits"])))
    width = max(len(k) for k, _ in rows)
    print()
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    print()
    print("per fault: 'first 202' = from the fault's start to the next accepted report;")
    print("           'recovered' = from the fault's end to the first claim of a report made after it")
    print(f"{'fault':<20} {'at':>7} {'lasted':>7} {'detail':<22} {'first 202':>9} {'recovered':>10}")
    for f in result["faults"]:
        nxt = "-" if f["first_202_after_s"] is None else f"{f['first_202_after_s']:.1f}s"
        claim = "-" if f["first_claim_after_s"] is None else f"{f['first_claim_after_s']:.1f}s"
        lasted = (f["restored_at"] or f["at"]) - f["at"]
        print(
            f"{f['kind']:<20} {f['at_s']:>6.0f}s {lasted:>6.1f}s {f['detail'][:22]:<22} {nxt:>9} {claim:>10}"
        )
    print()
    print("VERDICT:", "PASS" if not result["problems"] else "FAIL — " + "; ".join(result["problems"]))


T0 = time.time()


async def campaign(args: argparse.Namespace) -> int:
    global T0
    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="union-faults-"))
    kinds = [k for k in args.faults.split(",") if k]
    unknown = set(kinds) - set(FAULT_KINDS)
    if unknown:
        raise SystemExit(f"unknown fault kinds: {sorted(unknown)}; known: {', '.join(FAULT_KINDS)}")
    print(f"[faults] private PostgreSQL and Kafka under {root}; seed {args.seed}", flush=True)
    postgres = PrivatePostgres(root)
    postgres.start()
    await postgres.create_databases(list(SERVICES))
    kafka = PrivateKafka()
    kafka.start()
    c = Campaign(args, root, postgres, kafka, service_env(postgres, kafka))
    supervisor: asyncio.Task[None] | None = None
    try:
        for name in SERVICES:
            await start_service(c, name)
        members = await setup_members(c, rng, args.members)
        print(
            f"[faults] {len(members)} members ready; driving {args.reports} reports at {args.rate}/s",
            flush=True,
        )
        T0 = time.time()
        supervisor = asyncio.create_task(supervise(c))
        # Its own RNG: the schedule does not depend on how the load's choices interleave.
        chaos_task = asyncio.create_task(chaos(c, random.Random(args.seed + 1), kinds))
        started = time.monotonic()
        await drive(c, members, rng)
        drive_seconds = time.monotonic() - started
        c.stop.set()
        await chaos_task
        await confirm_unconfirmed(c)
        quiet = await wait_for_quiet(c, args.quiet_timeout)
        result = await count(c)
        recovery_times(c, await claim_times(c))
        result |= {
            "seed": args.seed,
            "drive_seconds": drive_seconds,
            "quiet_seconds": quiet,
            "unexpected_exits": c.unexpected_exits,
            "faults": [asdict(f) | {"at_s": f.at - T0} for f in c.faults],
            "fault_kinds": kinds,
            "rate": args.rate,
        }
        result["problems"] = verdict(result)
        print_table(result)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(out.write_text, json.dumps(result, indent=2, default=str) + "\n")
        print(f"[faults] written to {out}; service logs in {root}")
        return 1 if result["problems"] else 0
    finally:
        c.stop.set()
        if supervisor:
            supervisor.cancel()
        for proc in c.procs.values():
            sigkill(proc)
        kafka.stop()
        with contextlib.suppress(subprocess.CalledProcessError):
            postgres.stop("immediate")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--reports", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=15.0, help="reports per second (open loop)")
    parser.add_argument("--members", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--faults", default=",".join(FAULT_KINDS), help="comma-separated fault kinds")
    parser.add_argument(
        "--gap", type=float, nargs=2, default=(15.0, 35.0), help="seconds between faults (min max)"
    )
    parser.add_argument("--retry-seconds", type=float, default=90.0, help="how long a report is retried")
    parser.add_argument("--quiet-timeout", type=float, default=300.0)
    parser.add_argument("--out", default=str(REPO / ".cache" / "faults" / "latest.json"))
    args = parser.parse_args(argv)
    if args.reports < 1 or args.reports > 100_000 or args.rate <= 0 or args.rate > 500:
        parser.error("--reports must be 1..100000 and --rate 0..500 (the campaign is bounded)")
    return asyncio.run(campaign(args))


if __name__ == "__main__":
    sys.exit(main())
