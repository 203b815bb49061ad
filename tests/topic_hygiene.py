"""Test topics do not pile up on the local broker.

Every test names its own topics (``test.<hex>.events``, ``svc.<hex>.membership.events``, ...) and
event topics are kept for ever, so each ``make test`` used to leave about 2,000 topics (6,000
partition directories) on the broker ``make infra`` runs. After a few runs that broker took more
than the minute ``infra.sh`` waits to start, and spent CPU on partitions nobody reads.

The suite deletes them, but only when no other test session uses the broker: a helper running a
few tests beside ``make test`` must not delete the topics under its feet. Each session registers
its pid under ``<cache>/run/test-sessions/`` while it holds the broker; the first to arrive and
the last to leave (a registry with no other live pid) delete every topic with a test prefix, which
at those moments can only be left over. Only for the local broker: a cluster named by
``KAFKA_BOOTSTRAP_SERVERS`` may be shared, and a testcontainers broker goes away with its container.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import re
import threading
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

from aiokafka.admin import AIOKafkaAdminClient

#: The topic names tests and ``make bench-e2e`` make up: a prefix, then a fresh hex token.
TEST_TOPIC = re.compile(
    r"^((test|svc|fuzz|e2e|ops|prod|logs)\.[0-9a-f]{8,}\.|bench\.e2e\.raw\.[0-9a-f]{8,}$)"
)


def sessions_dir() -> Path:
    repo = Path(__file__).resolve().parent.parent
    cache = Path(os.environ.get("UNION_CACHE_DIR") or repo / ".cache")
    return cache / "run" / "test-sessions"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _others(directory: Path) -> list[int]:
    """Live sessions other than this one; a dead session's file (killed run) is removed."""
    live = []
    for entry in directory.glob("*.pid"):
        pid = int(entry.stem) if entry.stem.isdigit() else -1
        if pid == os.getpid():
            continue
        if pid > 0 and _alive(pid):
            live.append(pid)
        else:
            entry.unlink(missing_ok=True)
    return live


@contextlib.contextmanager
def _registry_lock(directory: Path) -> Iterator[None]:
    directory.mkdir(parents=True, exist_ok=True)
    with open(directory / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


async def delete_test_topics(
    bootstrap: str, *, pattern: re.Pattern[str] = TEST_TOPIC, chunk: int = 200
) -> list[str]:
    """Delete every topic whose name ``pattern`` matches; returns their names."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=60_000)
    await admin.start()
    try:
        doomed = sorted(t for t in await admin.list_topics() if pattern.match(t))
        for start in range(0, len(doomed), chunk):
            await admin.delete_topics(doomed[start : start + chunk], timeout_ms=60_000)
    finally:
        await admin.close()
    return doomed


def _delete_in_thread(bootstrap: str) -> None:
    """In a thread of its own: the session's event loop belongs to pytest-asyncio."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(asyncio.wait_for(delete_test_topics(bootstrap), timeout=180))
        except Exception as exc:  # the broker's state is the tests' business, not the cleanup's
            failure.append(exc)

    worker = threading.Thread(target=run, name="test-topic-cleanup")
    worker.start()
    worker.join()
    if failure:
        warnings.warn(f"could not delete left-over test topics: {failure[0]!r}", stacklevel=2)


@contextlib.contextmanager
def tidy_topics(
    bootstrap: str,
    directory: Path | None = None,
    *,
    delete: Callable[[str], None] = _delete_in_thread,
) -> Iterator[None]:
    """Hold the local broker for one test session; delete test topics when no other session is."""
    directory = directory or sessions_dir()
    mine = directory / f"{os.getpid()}.pid"
    with _registry_lock(directory):
        if not _others(directory):
            delete(bootstrap)
        mine.touch()
    try:
        yield
    finally:
        with _registry_lock(directory):
            mine.unlink(missing_ok=True)
            if not _others(directory):
                delete(bootstrap)
