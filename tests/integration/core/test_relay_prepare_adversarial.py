"""Review of 2c4e451 ("prepare the leader's statements before taking the lock"), trying to break it.

The leader's session must never be left, once it holds the relay lock, between the two steps in
which asyncpg prepares an unseen statement (Parse + Describe + Flush, then Bind + Execute + Sync):
there the backend waits for the client in an implicit transaction where neither
``idle_session_timeout`` nor ``idle_in_transaction_session_timeout`` is armed, so a leader frozen
there keeps the lock for ever when no follower is around to fence it.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import relay as relay_module
from shared.eventstore import EventStore
from shared.locks import LockSpace
from shared.relay import _PENDING, _TRY_LOCK, LeaderSession, OutboxRelay, leader_statements
from tests.integration.core.sample import registry
from tests.integration.core.test_relay_takeover import fill, pending
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration

LEASE = 2.0


def store() -> EventStore:
    return EventStore("core-test", registry)


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[asyncio.Task[None]]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield task
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def _plain_url(engine: AsyncEngine) -> str:
    return engine.url.set(drivername="postgresql").render_as_string(hide_password=False)


def _backend_state(url: str, pid: int, topic: str) -> tuple[bool, str | None]:
    """From another thread (the relay's event loop is blocked): does backend ``pid`` still hold
    the topic's relay lock, and what does pg_stat_activity say it is doing."""

    async def probe() -> tuple[bool, str | None]:
        conn = await asyncpg.connect(url)
        try:
            held = await conn.fetchval(
                "SELECT count(*) > 0 FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND objsubid = 2 AND pid = $1 AND classid = $2::int::oid AND objid = hashtext($3)::oid",
                pid,
                int(LockSpace.RELAY_LEADER),
                topic,
            )
            state = await conn.fetchval("SELECT state FROM pg_stat_activity WHERE pid = $1", pid)
            return bool(held), state
        finally:
            await conn.close()

    out: list[tuple[bool, str | None]] = []
    thread = threading.Thread(target=lambda: out.append(asyncio.run(probe())))
    thread.start()
    thread.join(timeout=30)
    return out[0]


async def test_nothing_is_prepared_in_two_steps_on_the_leader_session_once_it_holds_the_lock(
    core_engine: AsyncEngine, kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every asyncpg prepare (``Connection._get_statement`` that is not a cache hit sends Parse +
    Describe + Flush and waits for the reply) on a connection that holds the relay lock is
    recorded; at that instant the whole process is "frozen" (the event loop blocked for 1.6 leases,
    as a SIGSTOP would) and another thread checks whether the backend kept the lock through it.

    DEFECT on 2c4e451: ``raw.add_listener(OUTBOX_CHANNEL, ...)`` runs after the lock and asyncpg's
    ``add_listener`` sends ``LISTEN`` through ``Connection.fetch`` (an extended-protocol prepare of
    an unseen statement), not as a simple query: frozen there, the backend stays "active" in that
    half-done statement, no idle timeout armed, and keeps the lock for ever."""
    url = _plain_url(core_engine)
    leading: set[int] = set()  # id() of raw connections whose pg_try_advisory_lock returned true
    two_step: list[tuple[str, bool | None, str | None]] = []

    original_fetchval = LeaderSession.fetchval

    async def fetchval(self: LeaderSession, query: str, *args: Any) -> Any:
        value = await original_fetchval(self, query, *args)
        if query == _TRY_LOCK and value:
            leading.add(id(self.raw))
        return value

    original_get_statement = asyncpg.Connection._get_statement

    async def get_statement(self: Any, query: str, timeout: Any, **kw: Any) -> Any:
        cached = self._stmt_cache.get((query, self._protocol.get_record_class(), False))
        statement = await original_get_statement(self, query, timeout, **kw)
        if id(self) in leading and cached is None:
            if two_step:  # frozen once already: just record (the relay retries, and would again)
                two_step.append((query, None, None))
            else:
                # Parse + Describe + Flush answered, Bind not sent: freeze the process here.
                time.sleep(LEASE * 1.6)  # noqa: ASYNC251 - the freeze: the whole loop stops
                held, state = _backend_state(url, self.get_server_pid(), topic)
                two_step.append((query, held, state))
        return statement

    monkeypatch.setattr(LeaderSession, "fetchval", fetchval)
    monkeypatch.setattr(asyncpg.Connection, "_get_statement", get_statement)

    await fill(core_engine, [str(uuid.uuid4()) for _ in range(3)], 6, 5)
    relay = OutboxRelay(core_engine, store(), topic, kafka, batch_size=10, poll_interval=0.1, lease=LEASE)
    async with running(relay):
        await asyncio.wait_for(relay.ready.wait(), timeout=60)
        await eventually(lambda: _drained(core_engine), timeout=60)
        await asyncio.sleep(LEASE)  # some heartbeats, an idle poll or two
    assert not two_step, (
        "statements prepared in two steps on the leader's session while it held the lock "
        "(query, lock still held after a freeze of 1.6 leases there, backend state): "
        f"{two_step}"
    )


async def _drained(engine: AsyncEngine) -> bool:
    return await pending(engine) == 0


async def test_the_leaders_prepared_pending_read_is_planned_for_its_parameters_every_time(
    core_engine: AsyncEngine, kafka: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Since 2c4e451 ``_PENDING`` is a *named* prepared statement (before, asyncpg's cache made it
    one too, but only for as long as its cache lifetime): PostgreSQL may then switch it to a
    generic plan after five executions, unless ``plan_cache_mode = force_custom_plan`` (the relay
    session's settings) holds. Read from the leader's own backend (pg_prepared_statements is per
    session): many executions, not one generic plan. Fails if the setting is lost (checked with
    ``force_generic_plan`` swapped in)."""
    sessions: list[LeaderSession] = []
    original_prepare = LeaderSession.prepare

    async def prepare(self: LeaderSession, *queries: str) -> None:
        sessions.append(self)
        await original_prepare(self, *queries)

    monkeypatch.setattr(LeaderSession, "prepare", prepare)
    await fill(core_engine, [str(uuid.uuid4()) for _ in range(4)], 20, 5)  # 100 rows
    relay = OutboxRelay(core_engine, store(), topic, kafka, batch_size=7, poll_interval=0.05, lease=LEASE)
    async with running(relay):
        await asyncio.wait_for(relay.ready.wait(), timeout=60)
        await eventually(lambda: _drained(core_engine), timeout=60)
        session = sessions[-1]
        async with session._turn:  # the pump and the heartbeat wait meanwhile
            rows = await session.raw.fetch(
                "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements"
            )
    # The relay's statements with parameters (one without, _HELD_COUNT, has only a generic plan;
    # the backend also keeps what SQLAlchemy prepared on this connection before it left the pool).
    plans = {
        r["statement"]: (r["generic_plans"], r["custom_plans"])
        for r in rows
        if r["statement"] in leader_statements() and "$1" in r["statement"]
    }
    generic, custom = plans[_PENDING]
    assert custom >= 10, plans  # 100 rows in batches of 7, and idle polls: it did run many times
    assert generic == 0, f"_PENDING ran {generic} times from a generic plan ({custom} custom)"
    assert all(g == 0 for g, _ in plans.values()), plans


def test_plan_cache_mode_is_part_of_the_relay_session() -> None:
    assert relay_module.relay_session_settings(LEASE)["plan_cache_mode"] == "force_custom_plan"


async def test_a_migration_changing_a_column_the_pending_read_returns_does_not_stop_the_relay(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """Named prepared statements are not re-prepared by asyncpg (its cache used to retry an
    ``InvalidCachedStatementError`` once, transparently): after ``ALTER TABLE events ALTER COLUMN
    schema_version TYPE bigint`` while the relay leads, ``_PENDING`` fails with "cached plan must
    not change result type". That must end the leadership and a fresh session, which prepares
    again, must deliver what was appended after the migration; no loop, no crash."""
    relay = OutboxRelay(core_engine, store(), topic, kafka, batch_size=10, poll_interval=0.1, lease=LEASE)
    async with running(relay) as task:
        await fill(core_engine, [str(uuid.uuid4())], 3, 2)
        await asyncio.wait_for(relay.ready.wait(), timeout=60)
        await eventually(lambda: _drained(core_engine), timeout=60)
        async with core_engine.begin() as conn:
            await conn.execute(sa.text("ALTER TABLE events ALTER COLUMN schema_version TYPE bigint"))
        await core_engine.dispose()  # the writers' own SQLAlchemy statement caches (not the relay's)
        await fill(core_engine, [str(uuid.uuid4()) for _ in range(2)], 6, 3)
        await eventually(lambda: _drained(core_engine), timeout=30)
        assert not task.done()
