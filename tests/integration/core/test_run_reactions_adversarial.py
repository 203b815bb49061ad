"""Adversarial tests of RunReaction / executemany / BatchedProjection (review 40). Real PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import driver
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.inbox import OUTCOMES, RETRIES, InboxConsumer, Outcome, ReactionFailed, RunReaction, is_transient
from shared.unit_of_work import TransactionAborted, UnitOfWork
from tests.integration.core.test_consumer import LOG_DDL, envelope, record
from tests.integration.core.test_followed_streams import rows

pytestmark = pytest.mark.integration

_INSERT = "INSERT INTO applied (stream_id, n) VALUES ($1, $2)"


@pytest.fixture
async def engine(core_engine: AsyncEngine) -> AsyncEngine:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text(LOG_DDL))
        await conn.execute(sa.text("ALTER TABLE applied ADD CONSTRAINT not_666 CHECK (n <> 666)"))
    return core_engine


async def applied(engine: AsyncEngine) -> list[tuple[object, ...]]:
    return await rows(engine, "SELECT stream_id, n FROM applied ORDER BY seq")


class Spy:
    """one/many that log every call (python side), many writes then may fail."""

    def __init__(self, fail_many: int = 0, partial: bool = True) -> None:
        self.ones: list[int] = []
        self.manys: list[list[int]] = []
        self.fail_many = fail_many  # how many calls of many fail (after writing)
        self.partial = partial
        self.reaction = RunReaction(self.one, self.many)

    async def one(self, uow: UnitOfWork, env: EventEnvelope) -> None:
        self.ones.append(env.data["n"])
        await record(uow, env)

    async def many(self, uow: UnitOfWork, envs: Sequence[EventEnvelope]) -> None:
        self.manys.append([e.data["n"] for e in envs])
        if any(e.data.get("n") == 13 for e in envs):
            raise ValueError("thirteen is poison")
        if self.fail_many:
            self.fail_many -= 1
            if self.partial:
                await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])
            raise RuntimeError("many broke after writing")
        await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])


async def other(uow: UnitOfWork, env: EventEnvelope) -> None:
    await uow.conn.execute(
        sa.text("INSERT INTO applied (stream_id, n) VALUES (:s, :n)"),
        {"s": env.aggregate_id, "n": -env.data["n"]},
    )


def inbox(engine: AsyncEngine, reactions: dict, **kw: object) -> InboxConsumer:  # type: ignore[type-arg]
    return InboxConsumer("adv", engine, EventStore("downstream", {}), reactions, **kw)  # type: ignore[arg-type]


# --- order ----------------------------------------------------------------------------------------


async def test_order_with_duplicates_same_stream_twice_parks_and_releases(engine: AsyncEngine) -> None:
    spy = Spy()
    first = envelope("a", 1, 1)
    batch = [
        first,
        envelope("s", 3, 33, event_type="Other"),  # parked (needs s2)
        first,  # the same event again mid-run
        envelope("a", 2, 2),  # same stream twice in a run
        envelope("a", 2, 99),  # same version, other id: duplicate
        envelope("s", 2, 32),  # parked
        envelope("z", 1, 5, event_type="Nobody"),  # skipped: no break
        envelope("s", 1, 31),  # held, then release of s2 (Counted, via one) and s3 (Other)
        envelope("b", 1, 4),
        envelope("c", 1, 6),
    ]
    result = await inbox(engine, {"Counted": spy.reaction, "Other": other}).apply(batch)
    assert result.outcomes == [
        Outcome.PROCESSED,
        Outcome.PARKED,
        Outcome.DUPLICATE,
        Outcome.PROCESSED,
        Outcome.DUPLICATE,
        Outcome.PARKED,
        Outcome.SKIPPED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
        Outcome.PROCESSED,
    ]
    assert await applied(engine) == [("a", 1), ("a", 2), ("s", 31), ("s", 32), ("s", -33), ("b", 4), ("c", 6)]
    assert spy.manys == [[4, 6]] and spy.ones == [1, 2, 31, 32]  # parks flush runs
    assert await rows(engine, "SELECT count(*) FROM consumer_parked") == [(0,)]


async def test_two_run_reactions_alternating_keep_order(engine: AsyncEngine) -> None:
    a, b = Spy(), Spy()
    batch = [
        envelope("a1", 1, 1),
        envelope("a2", 1, 2, event_type="B"),
        envelope("a3", 1, 3, event_type="B"),
        envelope("a4", 1, 4),
        envelope("a5", 1, 5),
    ]
    await inbox(engine, {"Counted": a.reaction, "B": b.reaction}).apply(batch)
    assert await applied(engine) == [("a1", 1), ("a2", 2), ("a3", 3), ("a4", 4), ("a5", 5)]
    # RunReaction's contract: "the consumer hands many every run of two or more events whose
    # reaction is this one". The first event of B after held A events is reacted to directly
    # instead of starting B's run, so alternating kinds never batch at all.
    assert (a.manys, a.ones, b.manys, b.ones) == ([[4, 5]], [1], [[2, 3]], [])


async def test_followed_streams_with_a_failing_run_pin_the_original_index(engine: AsyncEngine) -> None:
    spy = Spy()

    def of(t: str, s: str, v: int, n: int) -> EventEnvelope:
        return envelope(s, v, n).model_copy(update={"aggregate_type": t})

    batch = [
        of("X", "x", 1, 100),
        of("Counter", "a", 1, 1),
        of("X", "x", 2, 101),
        of("Counter", "b", 1, 2),
        of("Counter", "c", 1, 13),
        of("Counter", "d", 1, 4),
    ]
    consumer = inbox(engine, {"Counted": spy.reaction}, follows={"Counter"})
    with pytest.raises(ReactionFailed) as failed:
        await consumer.apply(batch)
    assert failed.value.index == 4
    assert await applied(engine) == [] and await rows(engine, "SELECT * FROM inbox") == []
    result = await consumer.apply(batch[:4])
    assert result.outcomes == [Outcome.SKIPPED, Outcome.PROCESSED, Outcome.SKIPPED, Outcome.PROCESSED]
    assert await applied(engine) == [("a", 1), ("b", 2)]


# --- failures, the rerun --------------------------------------------------------------------------


async def test_many_failing_after_partial_writes_leaves_nothing_twice(engine: AsyncEngine) -> None:
    spy = Spy(fail_many=1)
    batch = [
        envelope("a", 1, 1),
        envelope("b", 1, 2),
        envelope("x", 1, 3, event_type="Other"),
        envelope("c", 1, 4),
        envelope("d", 1, 5),
    ]
    before = RETRIES.labels("adv", "run")._value.get()
    result = await inbox(engine, {"Counted": spy.reaction, "Other": other}).apply(batch)
    assert result.outcomes == [Outcome.PROCESSED] * 5
    assert spy.manys == [[1, 2]] and spy.ones == [1, 2, 4, 5]
    assert await applied(engine) == [("a", 1), ("b", 2), ("x", -3), ("c", 4), ("d", 5)]
    assert await rows(engine, "SELECT count(*) FROM inbox") == [(5,)]
    assert RETRIES.labels("adv", "run")._value.get() == before + 1


async def test_released_event_counted_once_when_a_later_run_fails(engine: AsyncEngine) -> None:
    """A parked event released during the first (runs) attempt, then a run fails and the batch
    is applied again: the released event must be counted processed once."""
    spy = Spy(fail_many=1)
    c = inbox(engine, {"Counted": spy.reaction, "Other": other})
    await c.apply([envelope("s", 2, 22, event_type="Other")])  # parked
    metric = OUTCOMES.labels("adv", Outcome.PROCESSED)
    before = metric._value.get()
    result = await c.apply([envelope("s", 1, 21), envelope("b", 1, 2), envelope("c", 1, 3)])
    assert result.outcomes == [Outcome.PROCESSED] * 3
    assert await applied(engine) == [("s", 21), ("s", -22), ("b", 2), ("c", 3)]
    # The inbox counts nothing itself: the consumer loop counts the outcomes and the released
    # events of the batch that committed, once (shared/consumer.py).
    assert result.released == 1
    assert metric._value.get() - before == 0, "released event counted by an attempt"


async def test_transient_error_in_many_is_rerun_through_one(engine: AsyncEngine) -> None:
    """A lock timeout (55P03) in many: the batch again through one (which succeeds)."""
    calls: list[int] = []

    async def many(uow: UnitOfWork, envs: Sequence[EventEnvelope]) -> None:
        calls.append(len(envs))
        await uow.conn.execute(sa.text("SET LOCAL lock_timeout = '50ms'"))
        await uow.conn.execute(sa.text("LOCK TABLE applied IN ACCESS EXCLUSIVE MODE"))

    async with engine.connect() as blocker:
        await blocker.execute(sa.text("LOCK TABLE applied IN SHARE MODE"))  # a holder
        c = inbox(engine, {"Counted": RunReaction(record, many)})
        task = asyncio.create_task(c.apply([envelope("a", 1, 1), envelope("b", 1, 2)]))
        await asyncio.sleep(0.5)
        assert calls == [2]
        await blocker.rollback()
    result = await asyncio.wait_for(task, 10)
    assert result.outcomes == [Outcome.PROCESSED] * 2
    assert await applied(engine) == [("a", 1), ("b", 2)]


async def test_connection_killed_inside_many(engine: AsyncEngine) -> None:
    """The run's connection is killed by the server: what apply raises must be transient (or the
    rerun must succeed); nothing half-applied."""
    calls: list[int] = []

    async def many(uow: UnitOfWork, envs: Sequence[EventEnvelope]) -> None:
        calls.append(len(envs))
        await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])
        pid = await driver.fetch(uow.conn, "SELECT pg_backend_pid()")
        async with engine.connect() as killer:
            await killer.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid[0][0]})
        await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])

    c = inbox(engine, {"Counted": RunReaction(record, many)})
    batch = [envelope("a", 1, 1), envelope("b", 1, 2)]
    try:
        result = await c.apply(batch)
    except Exception as exc:
        assert is_transient(exc), repr(exc)
    else:
        assert result.outcomes == [Outcome.PROCESSED] * 2
    assert calls == [2]
    again = await c.apply(batch)
    assert await applied(engine) == [("a", 1), ("b", 2)]
    assert set(again.outcomes) <= {Outcome.PROCESSED, Outcome.DUPLICATE}


async def test_cancelled_inside_many_rolls_back_and_pool_stays_clean(engine: AsyncEngine) -> None:
    started = asyncio.Event()

    async def many(uow: UnitOfWork, envs: Sequence[EventEnvelope]) -> None:
        await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])
        started.set()
        await driver.executemany(uow.conn, "SELECT pg_sleep($1)", [(5,), (5,)])

    c = inbox(engine, {"Counted": RunReaction(record, many)})
    batch = [envelope("a", 1, 1), envelope("b", 1, 2)]
    task = asyncio.create_task(c.apply(batch))
    await started.wait()
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await applied(engine) == [] and await rows(engine, "SELECT * FROM inbox") == []
    for _ in range(12):  # more than the pool: no connection is handed back mid-transaction
        async with engine.connect() as conn:
            assert (await conn.execute(sa.text("SELECT 1"))).scalar() == 1
    ok = inbox(engine, {"Counted": RunReaction(record, Spy().many)})
    assert (await ok.apply(batch)).outcomes == [Outcome.PROCESSED] * 2
    assert await applied(engine) == [("a", 1), ("b", 2)]


async def test_timeout_around_apply_during_many(engine: AsyncEngine) -> None:
    async def many(uow: UnitOfWork, envs: Sequence[EventEnvelope]) -> None:
        await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])
        await driver.executemany(uow.conn, "SELECT pg_sleep($1)", [(0.3,), (0.3,), (0.3,)])

    c = inbox(engine, {"Counted": RunReaction(record, many)})
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.4):
            await c.apply([envelope("a", 1, 1), envelope("b", 1, 2)])
    assert await applied(engine) == [] and await rows(engine, "SELECT * FROM inbox") == []


# --- the aborted-transaction guard ---------------------------------------------------------------


async def test_many_that_swallows_a_database_error(engine: AsyncEngine) -> None:
    """many catches its own failed statement: the commit must not go through (TransactionAborted
    or a ReactionFailed), and nothing is committed."""

    async def many(uow: UnitOfWork, envs: Sequence[EventEnvelope]) -> None:
        with contextlib.suppress(Exception):
            await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])

    c = inbox(engine, {"Counted": RunReaction(record, many)})
    with pytest.raises((TransactionAborted, ReactionFailed, sa.exc.DBAPIError)):
        await c.apply([envelope("a", 1, 1), envelope("b", 1, 666), envelope("c", 1, 3)])
    assert await applied(engine) == [] and await rows(engine, "SELECT * FROM inbox") == []


async def test_executemany_client_side_bad_row_does_not_half_commit(engine: AsyncEngine) -> None:
    """A row asyncpg cannot encode (client side) after asyncpg already sent 4x32KB of earlier rows:
    the docstring says the whole call fails and the transaction is aborted. Here the earlier rows
    stay in the transaction, no failure is counted, and a caller that swallows the error commits
    a partial call (the guard does not fire)."""
    committed = True
    try:
        async with UnitOfWork(engine, EventStore("downstream", {})) as uow:
            with contextlib.suppress(Exception):
                await driver.executemany(uow.conn, _INSERT, [("a", 1)] * 20000 + [("c", "not an int")])
            await uow.commit()
    except TransactionAborted:
        committed = False
    assert not committed or await applied(engine) == [], await applied(engine)


async def test_executemany_client_side_bad_row_in_a_run_is_pinned(engine: AsyncEngine) -> None:
    spy = Spy()
    c = inbox(engine, {"Counted": spy.reaction})
    bad = envelope("c", 1, 3).model_copy(update={"data": {"n": "x"}})
    with pytest.raises(ReactionFailed) as failed:
        await c.apply([envelope("a", 1, 1), envelope("b", 1, 2), bad])
    assert failed.value.index == 2
    assert await applied(engine) == []


async def test_timeout_inside_many_is_rerun_on_a_fresh_connection(engine: AsyncEngine) -> None:
    """many's own asyncio.timeout cancels its statement (the connection is invalidated), and
    the TimeoutError it raises sends the batch through one on a new connection."""
    tries: list[int] = []

    async def many(uow: UnitOfWork, envs: Sequence[EventEnvelope]) -> None:
        tries.append(len(envs))
        await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])
        async with asyncio.timeout(0.2):
            await driver.execute(uow.conn, "SELECT pg_sleep(5)")

    c = inbox(engine, {"Counted": RunReaction(record, many)})
    result = await c.apply([envelope("a", 1, 1), envelope("b", 1, 2), envelope("c", 1, 3)])
    assert tries == [3] and result.outcomes == [Outcome.PROCESSED] * 3
    assert await applied(engine) == [("a", 1), ("b", 2), ("c", 3)]


async def test_killed_connection_outcome(engine: AsyncEngine, caplog: pytest.LogCaptureFixture) -> None:
    """Which way the killed connection goes: the rerun (a warning) or an error to the loop."""

    async def many(uow: UnitOfWork, envs: Sequence[EventEnvelope]) -> None:
        pid = await driver.fetch(uow.conn, "SELECT pg_backend_pid()")
        async with engine.connect() as killer:
            await killer.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid[0][0]})
        await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])

    c = inbox(engine, {"Counted": RunReaction(record, many)})
    result = await c.apply([envelope("a", 1, 1), envelope("b", 1, 2)])
    assert result.outcomes == [Outcome.PROCESSED] * 2
    assert "a run failed" in caplog.text


async def test_refused_row_in_many_then_rerun_on_the_same_pooled_connection_commits(
    engine: AsyncEngine,
) -> None:
    """many's statement is refused by the server (failure counted on the connection); the rerun,
    on the very same pooled connection, must not be refused by the aborted-transaction guard."""
    from sqlalchemy.ext.asyncio import create_async_engine

    one_conn = create_async_engine(
        engine.url.render_as_string(hide_password=False), pool_size=1, max_overflow=0
    )
    try:

        async def many(uow: UnitOfWork, envs: Sequence[EventEnvelope]) -> None:
            await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, 666) for e in envs])  # a bug

        c = inbox(one_conn, {"Counted": RunReaction(record, many)})
        result = await c.apply([envelope("a", 1, 1), envelope("b", 1, 2)])
        assert result.outcomes == [Outcome.PROCESSED] * 2
        assert await applied(engine) == [("a", 1), ("b", 2)]
    finally:
        await one_conn.dispose()
