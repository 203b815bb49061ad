"""deploy/local/services.sh (what `make up` runs) brings a crashed service back at once.

The crash the operator saw: the killed process was a zombie nobody had reaped yet, so `kill -0`
called it alive and `make up` did nothing. To get that zombie deterministically this test makes
itself a child subreaper: the service, orphaned when the script exits, becomes our child, and we
reap it only at the end.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.infra import Infra
from tests.kafka_broker import REPO, free_port
from tests.kafka_support import read_topic

pytestmark = pytest.mark.e2e

SCRIPT = REPO / "deploy" / "local" / "services.sh"
STAFF = {"Authorization": "Bearer local-staff-token"}
PR_SET_CHILD_SUBREAPER = 36


@pytest.fixture
def subreaper() -> Iterator[list[int]]:
    """Orphans become our children (zombies until reaped). Yields a list of pids to reap after."""
    libc = ctypes.CDLL(None, use_errno=True)
    assert libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    to_reap: list[int] = []
    try:
        yield to_reap
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        for pid in to_reap:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)


def _state(pid: int) -> str:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rpartition(") ")[2].split()[0]


def _script(cmd: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), cmd, "membership"], env=env, capture_output=True, text=True, timeout=120
    )


def _ready(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    return False


def _register_unions(url: str, count: int) -> list[str]:
    ids = []
    with httpx.Client(base_url=url, headers=STAFF, timeout=10) as client:
        for i in range(count):
            r = client.post("/v1/unions", json={"name": f"工会{i}", "level": "municipal"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["union_id"])
    return ids


async def test_start_after_sigkill_brings_the_service_back_and_loses_no_event(
    infra: Infra, service_databases: dict[str, str], tmp_path: Path, subreaper: list[int]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    suffix = uuid.uuid4().hex[:10]
    topic = f"svc.{suffix}.membership.events"
    env = {
        **os.environ,
        "UNION_CACHE_DIR": str(tmp_path / "cache"),  # never the shared .cache/run
        "MEMBERSHIP_PORT": str(port),
        "MEMBERSHIP_DATABASE_URL": service_databases["membership"],
        "MEMBERSHIP_TOPIC": topic,
        "MEMBERSHIP_CLAIMS_TOPIC": f"svc.{suffix}.claims.events",
        "MEMBERSHIP_ACTIVITIES_TOPIC": f"svc.{suffix}.activities.events",
        "MEMBERSHIP_MEDIATION_TOPIC": f"svc.{suffix}.mediation.events",
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "UNION_RELAY_POLL_INTERVAL": "0.2",
    }
    pidfile = tmp_path / "cache" / "run" / "membership.pid"
    try:
        first = _script("start", env)
        assert first.returncode == 0, first.stdout + first.stderr
        pid = int(pidfile.read_text())
        subreaper.append(pid)
        assert _ready(url, 60), (tmp_path / "cache" / "run" / "membership.log").read_text()[-3000:]

        accepted = _register_unions(url, 10)
        os.kill(pid, signal.SIGKILL)  # right after the last 201: some events may be in the outbox
        deadline = time.monotonic() + 10
        while _state(pid) != "Z" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert _state(pid) == "Z", "the scenario needs the unreaped (zombie) process"

        again = _script("start", env)
        assert again.returncode == 0, again.stdout + again.stderr
        new_pid = int(pidfile.read_text())
        subreaper.append(new_pid)
        assert new_pid != pid, again.stdout
        assert _ready(url, 60), "the service does not answer after `start`:\n" + again.stdout
        accepted += _register_unions(url, 5)

        # Every accepted command's event is on Kafka (the restarted relay drains the outbox).
        received = await read_topic(infra.kafka, topic, expect=len(accepted), timeout=60)
        on_kafka = {json.loads(r.value)["aggregate_id"] for r in received}
        assert set(accepted) <= on_kafka, set(accepted) - on_kafka

        # A second start with everything healthy leaves the running service alone.
        idle = _script("start", env)
        assert "already running" in idle.stdout and int(pidfile.read_text()) == new_pid
    finally:
        stopped = _script("stop", env)
        assert stopped.returncode == 0, stopped.stderr


def _group(pgid: int) -> dict[int, str]:
    """pid -> state of every process in process group ``pgid`` (zombies too), from /proc."""
    found = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(") ")[2].split()
        except OSError:  # gone while we looked
            continue
        if int(fields[2]) == pgid:
            found[int(stat.parent.name)] = fields[0]
    return found


def _live(pgid: int) -> list[int]:
    return sorted(pid for pid, state in _group(pgid).items() if state not in {"Z", "X", "x"})


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


async def _readyz(url: str) -> int:
    async with httpx.AsyncClient(timeout=5) as client:
        return (await client.get(f"{url}/readyz")).status_code


def _reaped(pgid: int, timeout: float) -> bool:
    """Reap what the group left to us (we are its subreaper) until the group no longer exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            while os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG) is not None:
                pass
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


async def test_two_workers_start_when_ready_and_stop_as_a_whole_group(
    infra: Infra, service_databases: dict[str, str], tmp_path: Path, subreaper: list[int]
) -> None:
    """With UNION_HTTP_WORKERS=2 the supervisor binds the port before any worker serves it, so
    `start` must wait for /readyz, not for the port; and the workers are separate processes, so
    `stop` must end the whole process group. A supervisor killed with SIGKILL leaves its workers
    holding the port: one `start` must clear them and bring the service back."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    suffix = uuid.uuid4().hex[:10]
    run_dir = tmp_path / "run"
    env = {
        **os.environ,
        "UNION_RUN_DIR": str(run_dir),  # never the shared .cache/run
        "MEMBERSHIP_PORT": str(port),
        "MEMBERSHIP_HTTP_WORKERS": "2",
        "MEMBERSHIP_DATABASE_URL": service_databases["membership"],
        "MEMBERSHIP_TOPIC": f"svc.{suffix}.membership.events",
        "MEMBERSHIP_CLAIMS_TOPIC": f"svc.{suffix}.claims.events",
        "MEMBERSHIP_ACTIVITIES_TOPIC": f"svc.{suffix}.activities.events",
        "UNION_CONSUMER_GROUP_PREFIX": f"svc.{suffix}.",
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
    }
    pidfile = run_dir / "membership.pid"
    groups: list[int] = []
    try:
        first = _script("start", env)
        assert first.returncode == 0, first.stdout + first.stderr
        # No retry: `start` has returned, so the service must answer now.
        assert (await _readyz(url)) == 200, first.stdout
        pgid = int(pidfile.read_text())
        groups.append(pgid)
        subreaper.append(pgid)
        assert os.getpgid(pgid) == pgid and os.getsid(pgid) == pgid, "the service leads its own group"
        workers = [pid for pid in _live(pgid) if "multiprocessing.spawn" in _cmdline(pid)]
        assert len(workers) == 2, {pid: _cmdline(pid) for pid in _live(pgid)}

        # The supervisor dies at once; its workers live on and keep serving the port.
        os.kill(pgid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while _state(pgid) != "Z" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert set(workers) <= set(_live(pgid)), "the scenario needs the orphaned workers"

        again = _script("start", env)
        assert again.returncode == 0, again.stdout + again.stderr
        assert "is gone" in again.stderr, again.stderr
        assert _live(pgid) == [], f"the old workers {_live(pgid)} outlived `start`"
        assert (await _readyz(url)) == 200, again.stdout
        new_pgid = int(pidfile.read_text())
        assert new_pgid != pgid
        groups.append(new_pgid)
        subreaper.append(new_pgid)
        assert len([p for p in _live(new_pgid) if "multiprocessing.spawn" in _cmdline(p)]) == 2

        started = time.monotonic()
        stopped = _script("stop", env)
        took = time.monotonic() - started
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        assert took < 20, f"stop took {took:.1f} s"
        assert _live(new_pgid) == [], f"{_live(new_pgid)} of group {new_pgid} outlived `stop`"
        assert not pidfile.exists()
        for group in groups:
            assert _reaped(group, 10), f"group {group} still exists: {_group(group)}"
        log = (run_dir / "membership.log").read_text()
        # TERM, not KILL: the orphaned workers and then the new ones shut down cleanly.
        assert log.count("Application shutdown complete") == 4, log[-3000:]
    finally:
        _script("stop", env)
        for group in groups:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGKILL)
