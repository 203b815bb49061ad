"""Failover demo: a primary and a streaming standby (Debian PostgreSQL), the real services writing
through a multi-host URL, the primary killed and the standby promoted; then count what the promoted
store is missing that Kafka already has, once with synchronous and once with asynchronous
replication.

Per run (``sync``, then ``async``), everything private, on free loopback ports, in a temporary
directory, and gone afterwards:

1. ``initdb`` a primary (``synchronous_commit = on``; ``synchronous_standby_names = 'ANY 1
   (standby)'`` for the sync run, empty for the async one), ``pg_basebackup -R`` a standby of it
   (``cluster_name = standby``, which is the name the primary's quorum list waits for), a private
   Kafka broker, membership and claims as processes with
   ``<SERVICE>_DATABASE_URL=postgresql+asyncpg://postgres@/db?host=127.0.0.1:P1&host=127.0.0.1:P2&target_session_attrs=read-write``;
2. commit latency measured on the primary (single-row INSERTs, one per transaction);
3. an open-loop write load through membership's HTTP API: injury reports (claims reacts to each)
   and phone changes (events appended to existing member streams, whose versions a lost tail
   would make the next append reuse);
4. **the lag window**: the primary's walsender is frozen with SIGSTOP for ``--freeze`` seconds,
   so WAL written on the primary in that time does not leave it (what a network delay or a slow
   standby does to asynchronous replication; with synchronous replication, commits wait instead);
5. **the crash**: SIGKILL of the primary's postmaster and every child at once (the frozen
   walsender too), ``--detect`` seconds for failure detection, then ``pg_ctl promote`` of the
   standby. The services are not restarted: their pools and the relay's and consumers' sessions
   reconnect through the multi-host URL to whichever host is read-write;
6. the load keeps going for ``--after`` seconds, unanswered requests are asked again with the same
   Idempotency-Key, the system drains, and it counts, from Kafka (a plain consumer) and the
   promoted store: events on Kafka not in the store (**lost**), (stream, version) slots that
   carry two different events on Kafka (**versions reused**), accepted commands (202 / 200) whose
   event is not on Kafka, and accepted reports that claims never decided.

It prints the two runs side by side, writes ``.cache/failover/latest.json`` and exits 1 if the
sync run lost anything (or no command was accepted after the promotion).

    make failover-demo
    .venv/bin/python -m bench.failover --modes sync --rate 10 --before 4 --after 6   # a short one
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
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from bench.faults import (
    STAFF,
    Campaign,
    MemberPlan,
    PrivatePostgres,
    Report,
    confirm_unconfirmed,
    count,
    kill_kafka,
    post_until,
    read_topic,
    send_report,
    setup_members,
    sigkill,
    start_service,
)
from tests.kafka_broker import PrivateKafka

REPO = Path(__file__).resolve().parents[1]
#: The two services under load, with what each consumes (claims reacts to reports; membership
#: takes claims' feedback).
SERVICES: dict[str, tuple[str, ...]] = {"membership": ("claims.events",), "claims": ("membership.events",)}
STANDBY_NAME = "standby"
QUORUM = f"ANY 1 ({STANDBY_NAME})"


def log(message: str) -> None:
    print(f"[failover] {message}", flush=True)


@dataclass
class PhoneChange:
    member_id: str
    key: str
    accepted: bool = False


@dataclass
class Run:
    mode: str
    campaign: Campaign
    primary: PrivatePostgres
    standby: PrivatePostgres
    phones: list[PhoneChange] = field(default_factory=list)
    sent_at: dict[str, float] = field(default_factory=dict)
    marks: dict[str, float] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


# --- the cluster -----------------------------------------------------------------------------------


def multi_host_url(primary: PrivatePostgres, standby: PrivatePostgres, database: str) -> str:
    """The URL operators give a service for a primary + standby pair (SQLAlchemy's multi-host
    form): asyncpg tries the hosts in order and keeps the first that accepts writes."""
    hosts = f"host=127.0.0.1:{primary.port}&host=127.0.0.1:{standby.port}"
    return f"postgresql+asyncpg://postgres@/{database}?{hosts}&target_session_attrs=read-write"


async def wait_for_replication(primary: PrivatePostgres, sync: bool, timeout: float = 60) -> str:
    """Until the standby streams from the primary (in the quorum, for the sync run)."""
    deadline = time.monotonic() + timeout
    want = "quorum" if sync else "async"
    state = "none"
    while time.monotonic() < deadline:
        conn = await asyncpg.connect(primary.url("postgres"))
        try:
            row = await conn.fetchrow(
                "SELECT state, sync_state FROM pg_stat_replication WHERE application_name = $1",
                STANDBY_NAME,
            )
        finally:
            await conn.close()
        if row is not None:
            state = f"{row['state']}/{row['sync_state']}"
            if row["state"] == "streaming" and row["sync_state"] == want:
                return state
        await asyncio.sleep(0.3)
    raise RuntimeError(f"the standby never reached streaming/{want} (last seen: {state})")


async def walsender_pids(primary: PrivatePostgres) -> list[int]:
    conn = await asyncpg.connect(primary.url("postgres"))
    try:
        return [int(r["pid"]) for r in await conn.fetch("SELECT pid FROM pg_stat_replication")]
    finally:
        await conn.close()


def children(pid: int) -> list[int]:
    """The direct children of ``pid`` (PostgreSQL's backends and auxiliary processes)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.append(int(stat.parent.name))
    return found


def crash(pg: PrivatePostgres) -> int:
    """SIGKILL the postmaster and all its children at once, as a machine that dies would. Returns
    how many processes were killed. The cluster's System V segment is removed afterwards (a real
    crash leaves it to the next start; this cluster never starts again)."""
    pid = pg.postmaster_pid()
    if pid is None or not Path(f"/proc/{pid}").exists():
        return 0
    lines = (pg.data / "postmaster.pid").read_text().splitlines()
    victims = [pid, *children(pid)]
    for victim in victims:
        with contextlib.suppress(ProcessLookupError):
            os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{v}").exists() for v in victims):
        time.sleep(0.05)
    with contextlib.suppress(IndexError, ValueError, OSError, subprocess.SubprocessError):
        shmid = int(lines[6].split()[1])  # line 7 of postmaster.pid: "<key> <id>"
        subprocess.run(["ipcrm", "-m", str(shmid)], capture_output=True, timeout=10, check=False)
    return len(victims)


def shut_down(pg: PrivatePostgres) -> None:
    """The end of a run: ``pg_ctl stop -m immediate``, or SIGKILL where that fails."""
    if pg.postmaster_pid() is None:
        return
    try:
        pg.stop("immediate")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        crash(pg)


async def commit_latency(pg: PrivatePostgres, commits: int) -> dict[str, float]:
    """Single-row INSERTs, each its own transaction, on the primary: what one commit costs."""
    conn = await asyncpg.connect(pg.url("postgres"))
    try:
        await conn.execute("CREATE TABLE IF NOT EXISTS commit_probe (n int)")
        times = []
        for n in range(commits):
            started = time.perf_counter()
            await conn.execute("INSERT INTO commit_probe VALUES ($1)", n)
            times.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return summary_ms(times)


def summary_ms(times: list[float]) -> dict[str, float]:
    if not times:
        return {}
    ordered = sorted(times)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered), 3),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))], 3),
        "mean_ms": round(statistics.fmean(ordered), 3),
    }


# --- the load ----------------------------------------------------------------------------------------


async def change_phone(
    run: Run, client: httpx.AsyncClient, change: PhoneChange, phone: str, limit: asyncio.Semaphore
) -> None:
    async with limit:
        r = await post_until(
            client,
            f"/v1/members/{change.member_id}/contact",
            {"phone": phone},
            change.key,
            time.monotonic() + run.campaign.args.retry_seconds,
        )
    change.accepted = r is not None and r.status_code == 200 and bool(r.json().get("changed", True))


async def drive(run: Run, members: list[MemberPlan], rng: random.Random, stop: asyncio.Event) -> None:
    """Open loop at ``--rate`` ticks a second until ``stop``: each tick an injury report and a
    phone change of a random member (a new number every time, so each one is an event)."""
    c = run.campaign
    limit = asyncio.Semaphore(64)
    tasks: list[asyncio.Task[None]] = []
    start = time.monotonic()
    async with httpx.AsyncClient(base_url=c.url("membership"), headers=STAFF, timeout=10) as client:
        i = 0
        while not stop.is_set() and i < c.args.max_ticks:
            due = start + i / c.args.rate
            if (pause := due - time.monotonic()) > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
                if stop.is_set():
                    break
            report = Report(f"{run.mode}-r-{i}", rng.choice(members), rng.random() < 0.2)
            c.reports.append(report)
            run.sent_at[report.key] = time.time()
            tasks.append(asyncio.create_task(send_report(c, client, report, limit)))
            change = PhoneChange(rng.choice(members).member_id, f"{run.mode}-p-{i}")
            run.phones.append(change)
            tasks.append(asyncio.create_task(change_phone(run, client, change, f"139{i:08d}", limit)))
            i += 1
        await asyncio.gather(*tasks)


async def failover(run: Run) -> None:
    """Freeze the walsender, crash the primary, promote the standby (the services keep running)."""
    args = run.campaign.args
    frozen = await walsender_pids(run.primary)
    for pid in frozen:
        os.kill(pid, signal.SIGSTOP)
    run.marks["freeze"] = time.time()
    run.notes.append(f"walsender {frozen} SIGSTOPped for {args.freeze:.1f}s")
    await asyncio.sleep(args.freeze)
    killed = await asyncio.to_thread(crash, run.primary)
    run.marks["crash"] = time.time()
    run.notes.append(f"primary SIGKILLed ({killed} processes)")
    await asyncio.sleep(args.detect)
    await asyncio.to_thread(run.standby._run, "pg_ctl", "-D", str(run.standby.data), "-w", "promote")
    run.marks["promoted"] = time.time()
    run.notes.append(f"standby promoted {run.marks['promoted'] - run.marks['crash']:.1f}s after the crash")


DECIDED = "SELECT count(*) FROM report_decisions WHERE report_id = ANY($1::uuid[])"


async def wait_to_settle(run: Run, timeout: float) -> float:
    """Until the outboxes are empty and claims has decided every accepted report, or (a lost
    tail can leave reports that will never be decided) nothing changed for 8 s, or ``timeout``."""
    c = run.campaign
    start = time.monotonic()
    decided = 0
    last: tuple[int, int] | None = None
    still_since = time.monotonic()
    accepted = [r.report_id for r in c.reports if r.report_id]
    while time.monotonic() - start < timeout:
        try:
            outboxes = 0
            for name in c.services:
                conn = await asyncpg.connect(run.standby.url(name))
                try:
                    outboxes += await conn.fetchval("SELECT count(*) FROM outbox")
                    if name == "claims":
                        decided = await conn.fetchval(
                            "SELECT count(*) FROM report_decisions WHERE report_id = ANY($1::uuid[])",
                            accepted,
                        )
                finally:
                    await conn.close()
        except (OSError, asyncpg.PostgresError):
            await asyncio.sleep(1)
            continue
        if outboxes == 0 and decided == len(accepted):
            break
        if (outboxes, decided) != last:
            last, still_since = (outboxes, decided), time.monotonic()
        elif outboxes == 0 and time.monotonic() - still_since > 8:
            break
        await asyncio.sleep(1.0)
    return time.monotonic() - start


# --- counting ------------------------------------------------------------------------------------------


async def phone_events(bootstrap: str) -> Counter[str]:
    """MemberPhoneChanged events on Kafka per member (distinct event ids)."""
    seen: dict[str, str] = {}
    for rec in await read_topic(bootstrap, "membership.events"):
        envelope = json.loads(rec.value)
        if envelope["event_type"] == "MemberPhoneChanged":
            seen[envelope["event_id"]] = envelope["aggregate_id"]
    return Counter(seen.values())


async def tally(run: Run) -> dict[str, Any]:
    c = run.campaign
    c.postgres = run.standby  # count() reads the stores: the promoted one is the store now
    result = await count(c)
    crash_at, promoted_at = run.marks["crash"], run.marks["promoted"]
    accepted = [r for r in c.reports if r.accepted_at]
    before = [
        (r.accepted_at - run.sent_at[r.key]) * 1000
        for r in accepted
        if r.accepted_at and r.accepted_at < run.marks["freeze"]
    ]
    after = sorted(r.accepted_at for r in accepted if r.accepted_at and r.accepted_at > crash_at)
    on_kafka = await phone_events(c.kafka.bootstrap)
    wanted = Counter(p.member_id for p in run.phones if p.accepted)
    result |= {
        "mode": run.mode,
        "report_latency_before_fault": summary_ms(before),
        "phone_changes_accepted": sum(wanted.values()),
        "phone_changes_without_event": sum(max(0, n - on_kafka[m]) for m, n in wanted.items()),
        "accepted_after_promotion": sum(1 for t in after if t > promoted_at),
        "intake_gap_s": round(after[0] - crash_at, 2) if after else None,
        "notes": run.notes,
        "unexpected_exits": c.unexpected_exits,
    }
    for name, proc in c.procs.items():
        if proc.proc is None or proc.proc.poll() is not None:
            result["unexpected_exits"].append(f"{name} is not running at the end")
    topics = result["topics"]
    result["lost"] = sum(t["kafka_not_in_store"] for t in topics.values())
    result["versions_reused"] = sum(t["kafka_versions_reused"] for t in topics.values())
    result["accepted_not_on_kafka"] = (result.get("accepted_without_event") or 0) + result[
        "phone_changes_without_event"
    ]
    return result


# --- one run -------------------------------------------------------------------------------------------


async def one_run(args: argparse.Namespace, mode: str) -> dict[str, Any]:
    sync = mode == "sync"
    root = Path(tempfile.mkdtemp(prefix=f"union-failover-{mode}-"))
    rng = random.Random(args.seed)
    log(f"{mode}: private primary, standby and Kafka under {root}")
    # The quorum is switched on once the standby streams: set before, CREATE DATABASE (and
    # pg_basebackup's own checkpoint) would wait for a standby that does not exist yet.
    settings = {"synchronous_commit": "on", "synchronous_standby_names": "", "cluster_name": "primary"}
    kafka: PrivateKafka | None = None
    primary = standby = None
    c: Campaign | None = None
    kafka_up: asyncio.Task[None] | None = None
    try:
        kafka = PrivateKafka()
        kafka_up = asyncio.create_task(asyncio.to_thread(kafka.start, 120.0))
        primary = PrivatePostgres(root, "primary", settings=settings)
        await asyncio.to_thread(primary.start)
        await primary.create_databases(list(SERVICES))
        # The standby's own settings: its name in the quorum, and (once promoted, alone) no
        # standby of its own to wait for.
        standby = PrivatePostgres(
            root,
            "standby",
            standby_of=primary,
            settings={"cluster_name": STANDBY_NAME, "synchronous_standby_names": ""},
        )
        await asyncio.to_thread(standby.start)
        await wait_for_replication(primary, False)
        if sync:
            settings["synchronous_standby_names"] = QUORUM
            conn = await asyncpg.connect(primary.url("postgres"))
            try:
                await conn.execute(f"ALTER SYSTEM SET synchronous_standby_names = '{QUORUM}'")
                await conn.execute("SELECT pg_reload_conf()")
            finally:
                await conn.close()
        replication = await wait_for_replication(primary, sync)
        names = settings["synchronous_standby_names"]
        log(f"{mode}: standby {replication}; synchronous_standby_names = {names!r}")
        latency = await commit_latency(primary, args.commits)
        log(f"{mode}: commit latency p50 {latency['p50_ms']:.3f} ms, p99 {latency['p99_ms']:.3f} ms")
        await kafka_up
        env = {"KAFKA_BOOTSTRAP_SERVERS": kafka.bootstrap, "UNION_LOG_LEVEL": "WARNING"}
        for name in SERVICES:
            env[f"{name.upper()}_DATABASE_URL"] = multi_host_url(primary, standby, name)
        c = Campaign(args, root, primary, kafka, env, services=dict(SERVICES))
        for name in SERVICES:
            await start_service(c, name)
        members = await setup_members(c, rng, args.members)
        run = Run(mode, c, primary, standby)
        stop = asyncio.Event()
        log(f"{mode}: {len(members)} members; load at {args.rate}/s (a report and a phone change each)")
        load = asyncio.create_task(drive(run, members, rng, stop))
        await asyncio.sleep(args.before)
        await failover(run)
        for note in run.notes:
            log(f"{mode}: {note}")
        await asyncio.sleep(args.after)
        stop.set()
        await load
        await confirm_unconfirmed(c)
        settled = await wait_to_settle(run, args.settle_timeout)
        result = await tally(run)
        result |= {
            "commit_latency": latency,
            "replication": replication,
            "synchronous_standby_names": settings["synchronous_standby_names"],
            "settle_seconds": round(settled, 1),
        }
        log(
            f"{mode}: lost {result['lost']}, versions reused {result['versions_reused']}, "
            f"accepted not on Kafka {result['accepted_not_on_kafka']}"
        )
        return result
    finally:
        if c is not None:
            for proc in c.procs.values():
                sigkill(proc)
        if kafka_up is not None:
            with contextlib.suppress(Exception):
                await kafka_up  # never kill a broker that is still being started
        if kafka is not None:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(kill_kafka, kafka)
            shutil.rmtree(kafka.dir, ignore_errors=True)
        for pg in (primary, standby):
            if pg is not None:
                await asyncio.to_thread(shut_down, pg)
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)


# --- output ---------------------------------------------------------------------------------------------


def rows(r: dict[str, Any]) -> list[tuple[str, object]]:
    """The table's lines for one run."""
    commit, report = r["commit_latency"], r["report_latency_before_fault"]
    m, cl = r["topics"]["membership.events"], r["topics"]["claims.events"]
    return [
        ("synchronous_standby_names", repr(r["synchronous_standby_names"])),
        ("commit latency p50 / p99 (ms)", f"{commit['p50_ms']} / {commit['p99_ms']}"),
        ("report 202 latency p50 / p99 (ms)", f"{report.get('p50_ms')} / {report.get('p99_ms')}"),
        ("reports sent / accepted", f"{r['reports_sent']} / {r['reports_accepted']}"),
        ("phone changes accepted", r["phone_changes_accepted"]),
        ("accepted after promotion", r["accepted_after_promotion"]),
        ("intake gap after the crash (s)", r["intake_gap_s"]),
        ("membership.events store / Kafka", f"{m['in_store']} / {m['on_kafka']}"),
        ("claims.events store / Kafka", f"{cl['in_store']} / {cl['on_kafka']}"),
        ("LOST: on Kafka, not in the store", r["lost"]),
        ("VERSIONS REUSED on Kafka", r["versions_reused"]),
        ("ACCEPTED, event not on Kafka", r["accepted_not_on_kafka"]),
        ("in the store, not on Kafka", m["store_not_on_kafka"] + cl["store_not_on_kafka"]),
        ("reports never decided", r["reports_undecided"]),
        ("claims missing / duplicated", f"{r['claims_missing']} / {r['claims_duplicated']}"),
        ("services restarted or exited", len(r["unexpected_exits"])),
    ]


def print_table(results: dict[str, dict[str, Any]]) -> None:
    table = {mode: rows(r) for mode, r in results.items()}
    labels = [label for label, _ in next(iter(table.values()))]
    width = max(len(label) for label in labels)
    print()
    print(f"{'':<{width}}  " + "  ".join(f"{m:>18}" for m in table))
    for n, label in enumerate(labels):
        print(f"{label:<{width}}  " + "  ".join(f"{t[n][1]!s:>18}" for t in table.values()))
    print()


def problems(result: dict[str, Any]) -> list[str]:
    found = [
        f"{key}: {result[key]}"
        for key in ("lost", "versions_reused", "accepted_not_on_kafka")
        if result.get(key)
    ]
    if not result.get("accepted_after_promotion"):
        found.append("no command accepted after the promotion (the services did not reconnect)")
    if result.get("unexpected_exits"):
        found.append(f"services exited: {result['unexpected_exits']}")
    return found


async def demo(args: argparse.Namespace) -> int:
    started = time.monotonic()
    results: dict[str, dict[str, Any]] = {}
    for mode in args.modes.split(","):
        results[mode] = await one_run(args, mode)
    print_table(results)
    verdicts = {mode: problems(r) for mode, r in results.items()}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "scenario": {
            "rate_per_s": args.rate,
            "members": args.members,
            "before_s": args.before,
            "walsender_frozen_s": args.freeze,
            "detect_s": args.detect,
            "after_s": args.after,
            "seed": args.seed,
        },
        "runs": results,
        "problems": verdicts,
        "seconds": round(time.monotonic() - started, 1),
    }
    await asyncio.to_thread(out.write_text, json.dumps(document, indent=2, default=str) + "\n")
    log(f"written to {out} ({document['seconds']:.0f} s)")
    for mode, found in verdicts.items():
        log(f"{mode}: " + ("nothing lost" if not found else "; ".join(found)))
    return 1 if verdicts.get("sync") else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--modes", default="sync,async", help="comma-separated: sync, async")
    parser.add_argument("--rate", type=float, default=20.0, help="ticks a second (a report + a phone change)")
    parser.add_argument("--members", type=int, default=30)
    parser.add_argument("--before", type=float, default=8.0, help="seconds of load before the freeze")
    parser.add_argument("--freeze", type=float, default=2.0, help="seconds the walsender is frozen")
    parser.add_argument("--detect", type=float, default=1.0, help="seconds from the crash to the promotion")
    parser.add_argument("--after", type=float, default=10.0, help="seconds of load after the promotion")
    parser.add_argument("--commits", type=int, default=300, help="commits timed on the primary")
    parser.add_argument("--settle-timeout", type=float, default=60.0)
    parser.add_argument("--retry-seconds", type=float, default=60.0, help="how long a command is retried")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory (logs)")
    parser.add_argument("--out", default=str(REPO / ".cache" / "failover" / "latest.json"))
    args = parser.parse_args(argv)
    if not set(args.modes.split(",")) <= {"sync", "async"}:
        parser.error("--modes takes sync and/or async")
    if not 0 < args.rate <= 200 or args.before + args.freeze + args.detect + args.after > 120:
        parser.error("--rate must be 0..200 and the load at most 120 s in all (the demo is bounded)")
    args.max_ticks = int(args.rate * (args.before + args.freeze + args.detect + args.after + 30))
    return asyncio.run(demo(args))


if __name__ == "__main__":
    sys.exit(main())
