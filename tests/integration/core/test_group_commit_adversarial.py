"""Group commit, attacked: cancellations, odd exceptions, a dying connection, statements the
write classifier misreads, and the bookkeeping (in-flight count, leaders, metrics) after each.

Every test asserts what each caller was told and what the database actually holds. Every wait is
bounded, so a group that hangs fails its test instead of the run.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import uuid
from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import driver
from shared.aggregate import Conflict
from shared.group_commit import GroupCommit, TransactionEnded
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import Counter
from tests.integration.core.test_group_commit import Busy, count_on, groups_on, stored

pytestmark = pytest.mark.integration

Work = Callable[[UnitOfWork], Awaitable[int]]
LIMIT = 20  # seconds: every wait of a test is bounded by this


async def versions(engine: AsyncEngine, stream: str) -> list[int]:
    return [r.version for r in await stored(engine, stream)]


async def settled(groups: GroupCommit) -> None:
    """Nothing left behind: no command counted in flight, no leader task left running."""
    await asyncio.wait_for(groups.aclose(), LIMIT)
    assert groups._in_flight == 0, groups._in_flight
    assert not groups._leaders, groups._leaders
    assert groups._open is None or groups._open.size == 0


async def together(groups: GroupCommit, *works: Callable[[UnitOfWork], Awaitable[object]]) -> list[object]:
    """Run ``works`` as one group (beside a command kept in flight), each answer or error in
    order, bounded; then check nothing was left behind."""
    async with Busy(groups):
        results = await asyncio.wait_for(
            asyncio.gather(*(groups.run(uuid.uuid4(), w) for w in works), return_exceptions=True), LIMIT
        )
    await settled(groups)
    return list(results)


def new_leader(groups: GroupCommit, known: set[asyncio.Task[None]]) -> asyncio.Task[None]:
    (leader,) = groups._leaders - known
    return leader


async def scalar(engine: AsyncEngine, sql: str) -> object:
    async with engine.connect() as conn:
        return (await conn.execute(sa.text(sql))).scalar()


# --- the write classifier ------------------------------------------------------------------------


async def test_a_comment_marker_inside_a_string_hides_a_commit_so_the_group_runs_twice(
    core_engine: AsyncEngine,
) -> None:
    """``SELECT '--'; COMMIT`` through ``driver.execute`` (simple protocol: both statements run).
    ``_COMMENT`` strips from the ``--`` inside the literal to the end of the line, so the string
    looks like a lone plain read: neither the write nor the COMMIT is counted. The COMMIT lands
    the command before it; a later command then fails, the group "rolls back" (nothing left to
    roll back) and the first command runs again alone: applied twice."""
    groups = groups_on(core_engine)
    before, after = str(uuid.uuid4()), str(uuid.uuid4())

    async def hidden_commit(uow: UnitOfWork) -> int:
        await driver.execute(uow.conn, "SELECT '--'; COMMIT")
        return 0

    async def write_then_fail(uow: UnitOfWork) -> int:
        await count_on(after)(uow)
        raise RuntimeError("broke after writing")

    results = await together(groups, count_on(before), hidden_commit, write_then_fail)
    landed, failed_landed = await versions(core_engine, before), await versions(core_engine, after)
    facts = (results, landed, failed_landed)
    assert landed in ([], [1]), f"the first command landed {len(landed)} times: {facts}"
    if landed == [1]:
        # It landed in the group: nobody may tell it anything but "unknown" (TransactionEnded).
        assert isinstance(results[0], TransactionEnded), facts
    assert failed_landed == [], f"the command told it failed landed: {facts}"


async def test_a_comment_marker_inside_a_string_hides_a_write_before_a_refusal(
    core_engine: AsyncEngine,
) -> None:
    """A command refused "before any write": its statement ``SELECT '--' AS c INTO gc_leak``
    created and filled a table, which the classifier took for a plain read (the ``INTO`` is on the
    ``--`` line). The refusal is answered, and the group commits the table anyway."""
    groups = groups_on(core_engine)
    other = str(uuid.uuid4())

    async def write_then_refuse(uow: UnitOfWork) -> int:
        await driver.execute(uow.conn, "SELECT '--' AS c INTO gc_leak")
        raise Conflict("refused")

    results = await together(groups, count_on(other), write_then_refuse)
    assert results[0] == 1 and isinstance(results[1], Conflict), results
    assert await versions(core_engine, other) == [1]
    leaked = await scalar(core_engine, "SELECT to_regclass('gc_leak') IS NOT NULL")
    assert not leaked, "a refused command's table was committed by its group"


async def test_a_large_object_created_by_a_refused_command_is_committed_by_its_group(
    core_engine: AsyncEngine,
) -> None:
    """``SELECT lo_from_bytea(0, ...)`` writes (a large object, transactional) but passes for a
    plain read: a built-in function with effects missing from ``_PLAIN_READ``'s list."""
    groups = groups_on(core_engine)
    other = str(uuid.uuid4())
    objects_before = await scalar(core_engine, "SELECT count(*) FROM pg_largeobject_metadata")

    async def write_then_refuse(uow: UnitOfWork) -> int:
        await uow.conn.execute(sa.text("SELECT lo_from_bytea(0, 'secret'::bytea)"))
        raise Conflict("refused")

    results = await together(groups, count_on(other), write_then_refuse)
    assert results[0] == 1 and isinstance(results[1], Conflict), results
    objects_after = await scalar(core_engine, "SELECT count(*) FROM pg_largeobject_metadata")
    assert objects_after == objects_before, "a refused command's large object was committed"


async def test_an_uncommented_commit_after_a_read_is_still_caught(core_engine: AsyncEngine) -> None:
    """Control for the comment-marker case: ``SELECT 1; COMMIT`` and a commented COMMIT are seen."""
    for sql in ("SELECT 1; COMMIT", "SELECT 1 /* x */; COMMIT", "SELECT 1 -- x\n; COMMIT"):
        groups = groups_on(core_engine)
        before = str(uuid.uuid4())

        async def ends_it(uow: UnitOfWork, sql: str = sql) -> int:
            await driver.execute(uow.conn, sql)
            return 0

        async with Busy(groups):
            results = await asyncio.wait_for(
                asyncio.gather(
                    groups.run(uuid.uuid4(), count_on(before)),
                    groups.run(uuid.uuid4(), ends_it),
                    return_exceptions=True,
                ),
                LIMIT,
            )
        await settled(groups)
        assert all(isinstance(r, TransactionEnded) for r in results), (sql, results)
        assert await versions(core_engine, before) == [1], sql  # landed once, never twice


# --- the connection dying mid-group ---------------------------------------------------------------


async def _terminate(engine: AsyncEngine, pid: int) -> None:
    async with engine.connect() as other:
        assert (await other.execute(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})).scalar()
    await asyncio.sleep(0.05)  # the server has closed it


async def test_a_connection_killed_mid_group_lets_every_command_run_again_alone(
    core_engine: AsyncEngine,
) -> None:
    """The group's backend is terminated between two commands' statements: nothing of the group
    can have committed (the server rolled it back), so, as a lone command's would, each runs
    again alone and succeeds once."""
    groups = groups_on(core_engine)
    first, killer, last = (str(uuid.uuid4()) for _ in range(3))
    attempts = 0

    async def kill_then_write(uow: UnitOfWork) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            pid = (await uow.conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
            assert isinstance(pid, int)
            await _terminate(core_engine, pid)
        return await count_on(killer)(uow)

    results = await together(groups, count_on(first), kill_then_write, count_on(last))
    assert results == [1, 1, 1], results
    for stream in (first, killer, last):
        assert await versions(core_engine, stream) == [1], stream


async def test_a_connection_killed_while_a_command_waits_lets_the_next_one_run_again_alone(
    core_engine: AsyncEngine,
) -> None:
    """The backend dies while no statement runs; the *next* command meets the dead connection on
    its first (read) statement."""
    groups = groups_on(core_engine)
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    killed = False

    async def write_and_kill(uow: UnitOfWork) -> int:
        nonlocal killed
        version = await count_on(first)(uow)
        if not killed:
            killed = True
            pid = (await uow.conn.execute(sa.text("SELECT pg_backend_pid()"))).scalar()
            assert isinstance(pid, int)
            await _terminate(core_engine, pid)
        return version

    results = await together(groups, write_and_kill, count_on(second))
    assert results == [1, 1], results
    assert await versions(core_engine, first) == [1]
    assert await versions(core_engine, second) == [1]


async def test_a_statement_timed_out_inside_a_command_does_not_break_the_others(
    core_engine: AsyncEngine,
) -> None:
    """A command bounds a slow read with ``asyncio.wait_for`` and goes on without it: the
    cancellation inside SQLAlchemy invalidates the shared connection (an "exit exception"). The
    other commands of the group must still each land once, and be told so."""
    groups = groups_on(core_engine)
    first, last = str(uuid.uuid4()), str(uuid.uuid4())
    attempts = 0

    async def best_effort_read(uow: UnitOfWork) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(uow.conn.execute(sa.text("SELECT pg_sleep(5)")), 0.1)
        return -1

    results = await together(groups, count_on(first), best_effort_read, count_on(last))
    told = [r if isinstance(r, int) else type(r).__name__ for r in results]
    stored_now = [await versions(core_engine, first), await versions(core_engine, last)]
    assert told[0] == 1 and told[2] == 1, (told, stored_now, groups.groups_failed)
    assert stored_now == [[1], [1]]


async def test_a_statement_timed_out_then_refused_does_not_break_the_others(
    core_engine: AsyncEngine,
) -> None:
    groups = groups_on(core_engine)
    first, last = str(uuid.uuid4()), str(uuid.uuid4())

    async def timed_out_then_refuse(uow: UnitOfWork) -> int:
        try:
            await asyncio.wait_for(driver.fetch(uow.conn, "SELECT pg_sleep(5)"), 0.1)
        except TimeoutError:
            raise Conflict("too slow") from None
        return -1

    results = await together(groups, count_on(first), timed_out_then_refuse, count_on(last))
    assert results[0] == 1 and isinstance(results[1], Conflict) and results[2] == 1, results
    assert await versions(core_engine, first) == [1]
    assert await versions(core_engine, last) == [1]


async def test_a_driver_read_timed_out_by_the_last_command_does_not_commit_its_group_into_nothing(
    core_engine: AsyncEngine,
) -> None:
    """The same bounded read, through ``driver.fetch`` (asyncpg directly), by the *last* command
    of its group: asyncpg cancels the statement on the server, which aborts the transaction,
    but asyncpg raised CancelledError, not a database error, so no failure is counted. COMMIT of
    an aborted transaction is a silent ROLLBACK: the first command must not be told it landed."""
    groups = groups_on(core_engine)
    first = str(uuid.uuid4())
    attempts = 0

    async def best_effort_read(uow: UnitOfWork) -> int:
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(driver.fetch(uow.conn, "SELECT pg_sleep(5)"), 0.2)
        return -1

    results = await together(groups, count_on(first), best_effort_read)
    landed = await versions(core_engine, first)
    if results[0] == 1:
        assert landed == [1], f"told it landed, but nothing did: {results}"
    else:
        assert landed == [], results


# --- cancellation ----------------------------------------------------------------------------


async def test_a_command_cancelled_inside_a_database_statement_in_its_turn_takes_no_one_with_it(
    core_engine: AsyncEngine,
) -> None:
    """Cancelled while its statement runs (SQLAlchemy invalidates the shared connection)."""
    for through_driver in (False, True):
        groups = groups_on(core_engine)
        slow_stream = str(uuid.uuid4())
        others = [str(uuid.uuid4()) for _ in range(3)]
        in_statement = asyncio.Event()

        async def write_then_block(
            uow: UnitOfWork,
            through_driver: bool = through_driver,
            slow_stream: str = slow_stream,
            in_statement: asyncio.Event = in_statement,
        ) -> int:
            await count_on(slow_stream)(uow)
            in_statement.set()
            if through_driver:
                await driver.fetch(uow.conn, "SELECT pg_sleep(10)")
            else:
                await uow.conn.execute(sa.text("SELECT pg_sleep(10)"))
            return 0

        async with Busy(groups):
            slow = asyncio.create_task(groups.run(uuid.uuid4(), write_then_block))
            await asyncio.sleep(0)
            rest = [asyncio.create_task(groups.run(uuid.uuid4(), count_on(s))) for s in others]
            await asyncio.wait_for(in_statement.wait(), LIMIT)
            await asyncio.sleep(0.1)
            slow.cancel()
            assert await asyncio.wait_for(asyncio.gather(*rest), LIMIT) == [1] * 3
            with pytest.raises(asyncio.CancelledError):
                await asyncio.wait_for(slow, LIMIT)
        await settled(groups)
        assert await versions(core_engine, slow_stream) == [], through_driver
        for stream in others:
            assert await versions(core_engine, stream) == [1], through_driver
        assert groups.groups_failed == 1


async def test_commands_cancelled_before_their_turn_leave_nothing_and_the_rest_commit(
    core_engine: AsyncEngine,
) -> None:
    """Cancelled while queued for the turn lock (behind a slow command) and while waiting for the
    transaction to open: they never ran, and the group goes on."""
    groups = groups_on(core_engine)
    gate = asyncio.Event()
    slow_stream, queued_stream, kept_stream = (str(uuid.uuid4()) for _ in range(3))

    async def slow(uow: UnitOfWork) -> int:
        version = await count_on(slow_stream)(uow)
        await gate.wait()
        return version

    async with Busy(groups):
        first = asyncio.create_task(groups.run(uuid.uuid4(), slow))
        await asyncio.sleep(0)
        queued = asyncio.create_task(groups.run(uuid.uuid4(), count_on(queued_stream)))
        kept = asyncio.create_task(groups.run(uuid.uuid4(), count_on(kept_stream)))
        await asyncio.sleep(0.1)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(queued, LIMIT)
        gate.set()
        assert await asyncio.wait_for(asyncio.gather(first, kept), LIMIT) == [1, 1]
    await settled(groups)
    assert await versions(core_engine, queued_stream) == []
    assert await versions(core_engine, slow_stream) == [1]
    assert await versions(core_engine, kept_stream) == [1]
    assert (groups.groups_committed, groups.groups_failed) == (1, 0)


async def test_a_refusal_resting_on_a_write_whose_caller_then_gave_up_is_decided_again_alone(
    core_engine: AsyncEngine,
) -> None:
    """The second command refuses because of the first's write; the first's caller then gives up
    before COMMIT, so that write never lands: the refusal must not stand on it."""
    groups = groups_on(core_engine)
    stream = str(uuid.uuid4())
    gate = asyncio.Event()
    refused_once = asyncio.Event()

    async def only_if_empty(uow: UnitOfWork) -> int:
        counter = await uow.load(Counter, stream)
        if counter.total:
            refused_once.set()
            raise Conflict("already counted")
        counter.count(5)
        await uow.save(counter)
        return counter.version

    async def hold_group(uow: UnitOfWork) -> int:
        await gate.wait()
        return 0

    async with Busy(groups):
        first = asyncio.create_task(groups.run(uuid.uuid4(), count_on(stream)))
        await asyncio.sleep(0)
        second = asyncio.create_task(groups.run(uuid.uuid4(), only_if_empty))
        third = asyncio.create_task(groups.run(uuid.uuid4(), hold_group))
        await asyncio.wait_for(refused_once.wait(), LIMIT)
        first.cancel()  # its turn is over, the group has not committed (the third holds it)
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(first, LIMIT)
        gate.set()
        assert await asyncio.wait_for(second, LIMIT) == 1
        assert await asyncio.wait_for(third, LIMIT) == 0
    await settled(groups)
    rows = await stored(core_engine, stream)
    assert [r.version for r in rows] == [1]


async def _slow_commit_table(engine: AsyncEngine) -> None:
    """A table whose rows make COMMIT take ~0.6 s (a deferred constraint trigger that sleeps)."""
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE gc_slow (k text PRIMARY KEY)"))
        await conn.execute(
            sa.text(
                "CREATE FUNCTION gc_sleep() RETURNS trigger LANGUAGE plpgsql AS"
                " $$ BEGIN PERFORM pg_sleep(0.6); RETURN NULL; END $$"
            )
        )
        await conn.execute(
            sa.text(
                "CREATE CONSTRAINT TRIGGER gc_slow_commit AFTER INSERT ON gc_slow"
                " DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION gc_sleep()"
            )
        )


def insert_slow(key: str) -> Work:
    async def work(uow: UnitOfWork) -> int:
        await uow.conn.execute(sa.text("INSERT INTO gc_slow VALUES (:k)"), {"k": key})
        return 1

    return work


async def slow_keys(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return sorted((await conn.execute(sa.text("SELECT k FROM gc_slow"))).scalars())


async def test_a_command_cancelled_while_its_group_commits_does_not_undo_the_others(
    core_engine: AsyncEngine,
) -> None:
    """Once COMMIT is sent, a caller giving up changes nothing: the others are told they landed,
    and they did (the cancelled one landed too: unknown to its caller, as alone)."""
    await _slow_commit_table(core_engine)
    groups = groups_on(core_engine)
    async with Busy(groups):
        known = set(groups._leaders)
        tasks = [asyncio.create_task(groups.run(uuid.uuid4(), insert_slow(k))) for k in "abc"]
        await asyncio.sleep(0.3)  # all three ran; COMMIT is running the deferred trigger
        assert new_leader(groups, known) and not tasks[1].done()
        tasks[1].cancel()
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), LIMIT)
    await settled(groups)
    assert results[0] == 1 and results[2] == 1 and isinstance(results[1], asyncio.CancelledError)
    assert await slow_keys(core_engine) == ["a", "b", "c"]
    assert (groups.groups_committed, groups.groups_failed) == (1, 0)


async def test_a_leader_cancelled_during_commit_tells_everyone_the_outcome_is_unknown(
    core_engine: AsyncEngine,
) -> None:
    await _slow_commit_table(core_engine)
    groups = groups_on(core_engine)
    async with Busy(groups):
        known = set(groups._leaders)
        tasks = [asyncio.create_task(groups.run(uuid.uuid4(), insert_slow(k))) for k in "abc"]
        await asyncio.sleep(0.3)
        leader = new_leader(groups, known)
        for _ in range(3):  # and again, as a shutdown that insists would
            leader.cancel()
            await asyncio.sleep(0.05)
        results = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), LIMIT)
    await settled(groups)
    assert all(isinstance(r, ConnectionAbortedError) for r in results), results
    await asyncio.sleep(1)  # the server finishes the COMMIT it got
    keys = await slow_keys(core_engine)
    assert keys in ([], ["a", "b", "c"]), keys  # all or nothing, never twice (primary key)
    assert groups.groups_committed == 0


async def test_a_leader_cancelled_before_it_first_runs_leaves_no_command_hanging(
    core_engine: AsyncEngine,
) -> None:
    """Shutdown code that cancels tasks can reach a leader the loop has not started yet: its
    body (and its ``finally``, which sets ``ready`` and the outcome) then never runs."""
    groups = groups_on(core_engine)
    stream = str(uuid.uuid4())
    async with Busy(groups):
        known = set(groups._leaders)
        member = asyncio.create_task(groups.run(uuid.uuid4(), count_on(stream)))
        await asyncio.sleep(0)  # the member has joined and created its leader, not yet run
        new_leader(groups, known).cancel()
        done, _ = await asyncio.wait({member}, timeout=5)
        if not done:
            member.cancel()
            pytest.fail("the member waits forever for a group whose leader never ran")
        assert member.result() == 1
    await settled(groups)
    assert await versions(core_engine, stream) == [1]


class SlowStart(UnitOfWork):
    """The group's own unit of work (no correlation id) takes a while to open."""

    async def __aenter__(self) -> SlowStart:
        await asyncio.sleep(0.3)
        return await super().__aenter__()


async def test_a_leader_cancelled_before_its_transaction_opens_lets_every_command_run_alone(
    core_engine: AsyncEngine,
) -> None:
    from shared.eventstore import EventStore
    from tests.integration.core.sample import registry

    store = EventStore("core-test", registry)
    groups = GroupCommit(
        lambda cid: (SlowStart if cid is None else UnitOfWork)(core_engine, store, correlation_id=cid),
        max_size=16,
    )
    streams = [str(uuid.uuid4()) for _ in range(3)]
    async with Busy(groups):
        known = set(groups._leaders)
        tasks = [asyncio.create_task(groups.run(uuid.uuid4(), count_on(s))) for s in streams]
        await asyncio.sleep(0.1)
        new_leader(groups, known).cancel()
        assert await asyncio.wait_for(asyncio.gather(*tasks), LIMIT) == [1, 1, 1]
    await settled(groups)
    for stream in streams:
        assert await versions(core_engine, stream) == [1]
    assert (groups.groups_committed, groups.groups_failed) == (0, 1)


async def test_a_leader_cancelled_again_and_again_mid_group_still_runs_everyone_once(
    core_engine: AsyncEngine,
) -> None:
    groups = groups_on(core_engine)
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    in_turn, release = asyncio.Event(), asyncio.Event()
    attempts = 0

    async def write_wait_write(uow: UnitOfWork) -> int:
        nonlocal attempts
        attempts += 1
        await count_on(a)(uow)
        if attempts == 1:
            in_turn.set()
            await release.wait()
        return await count_on(b)(uow)

    async with Busy(groups):
        known = set(groups._leaders)
        first = asyncio.create_task(groups.run(uuid.uuid4(), write_wait_write))
        await asyncio.sleep(0)
        later = asyncio.create_task(groups.run(uuid.uuid4(), count_on(c)))
        await asyncio.wait_for(in_turn.wait(), LIMIT)
        leader = new_leader(groups, known)
        for _ in range(5):
            leader.cancel()
            await asyncio.sleep(0.02)
        release.set()
        assert await asyncio.wait_for(asyncio.gather(first, later), LIMIT) == [1, 1]
    await settled(groups)
    for stream in (a, b, c):
        assert await versions(core_engine, stream) == [1], stream


# --- exceptions of every kind -------------------------------------------------------------------


class Abort(BaseException):
    """Neither an Exception nor a cancellation (as KeyboardInterrupt or SystemExit are)."""


async def test_a_base_exception_or_generator_exit_from_a_command_fails_only_that_command(
    core_engine: AsyncEngine,
) -> None:
    for kind, writes_first in ((Abort, True), (Abort, False), (GeneratorExit, True), (GeneratorExit, False)):
        groups = groups_on(core_engine)
        first, own, last = (str(uuid.uuid4()) for _ in range(3))

        async def breaks(
            uow: UnitOfWork, kind: type[BaseException] = kind, wf: bool = writes_first, own: str = own
        ) -> int:
            if wf:
                await count_on(own)(uow)
            raise kind()

        async with Busy(groups):
            tasks = [
                asyncio.create_task(groups.run(uuid.uuid4(), w))
                for w in (count_on(first), breaks, count_on(last))
            ]
            _done, pending = await asyncio.wait(tasks, timeout=LIMIT)
            assert not pending
        await settled(groups)
        assert tasks[0].result() == 1 and tasks[2].result() == 1, kind
        assert isinstance(tasks[1].exception(), kind)
        assert await versions(core_engine, first) == [1]
        assert await versions(core_engine, last) == [1]
        assert await versions(core_engine, own) == []


async def test_an_error_undone_inside_a_savepoint_keeps_every_answer_right(
    core_engine: AsyncEngine,
) -> None:
    """A command that tries something in a savepoint and recovers: a refused statement (the
    savepoint rolls it back) or an exception of its own after a write inside it."""
    groups = groups_on(core_engine)
    first, tried, kept, last = (str(uuid.uuid4()) for _ in range(4))

    async def try_in_savepoint(uow: UnitOfWork) -> int:
        with contextlib.suppress(DBAPIError):
            async with uow.conn.begin_nested():
                await count_on(tried)(uow)
                await uow.conn.execute(sa.text("SELECT 1 / 0"))
        with contextlib.suppress(Conflict):
            async with uow.conn.begin_nested():
                await count_on(tried, 2)(uow)
                raise Conflict("changed its mind")
        return await count_on(kept)(uow)

    async with Busy(groups):
        results = await asyncio.wait_for(
            asyncio.gather(
                *(groups.run(uuid.uuid4(), w) for w in (count_on(first), try_in_savepoint, count_on(last))),
                return_exceptions=True,
            ),
            LIMIT,
        )
    await settled(groups)
    assert results == [1, 1, 1], results
    assert await versions(core_engine, tried) == []
    for stream in (first, kept, last):
        assert await versions(core_engine, stream) == [1], stream


async def test_an_error_while_streaming_rows_that_a_command_swallows_poisons_no_group(
    core_engine: AsyncEngine,
) -> None:
    """The failure comes while fetching rows of a server-side cursor, not from execute."""
    groups = groups_on(core_engine)
    first = str(uuid.uuid4())

    async def swallow_stream(uow: UnitOfWork) -> int:
        with contextlib.suppress(DBAPIError):
            result = await uow.conn.stream(sa.text("SELECT 1 / (g - 3000) FROM generate_series(1, 5000) g"))
            async for _ in result:
                pass
        return -1

    results = await together(groups, count_on(first), swallow_stream)
    landed = await versions(core_engine, first)
    assert (results[0], landed) in ((1, [1]),) or (not isinstance(results[0], int) and landed == []), (
        results,
        landed,
    )


async def test_a_command_that_commits_through_its_unit_of_work_fails_its_group_loudly(
    core_engine: AsyncEngine,
) -> None:
    groups = groups_on(core_engine)
    before, after = str(uuid.uuid4()), str(uuid.uuid4())

    async def commits(uow: UnitOfWork) -> int:
        await uow.commit()
        return 0

    async with Busy(groups):
        results = await asyncio.wait_for(
            asyncio.gather(
                *(groups.run(uuid.uuid4(), w) for w in (count_on(before), commits, count_on(after))),
                return_exceptions=True,
            ),
            LIMIT,
        )
    await settled(groups)
    assert all(isinstance(r, TransactionEnded) for r in results), results
    assert await versions(core_engine, before) == [1]
    assert await versions(core_engine, after) == []


# --- sizes, counters, many groups -----------------------------------------------------------


async def test_max_size_two_with_refusals_and_failures_at_the_boundaries(core_engine: AsyncEngine) -> None:
    groups = groups_on(core_engine, max_size=2)
    streams = [str(uuid.uuid4()) for _ in range(9)]

    def work(i: int) -> Work:
        if i % 3 == 1:
            return count_on(streams[i], n=0)  # refused before writing

        if i % 3 == 2:

            async def write_then_fail(uow: UnitOfWork) -> int:
                await count_on(streams[i])(uow)
                raise RuntimeError(str(i))

            return write_then_fail
        return count_on(streams[i])

    async with Busy(groups):
        results = await asyncio.wait_for(
            asyncio.gather(*(groups.run(uuid.uuid4(), work(i)) for i in range(9)), return_exceptions=True),
            LIMIT,
        )
    await settled(groups)
    for i, result in enumerate(results):
        if i % 3 == 0:
            assert result == 1 and await versions(core_engine, streams[i]) == [1], (i, result)
        else:
            expected = Conflict if i % 3 == 1 else RuntimeError
            assert isinstance(result, expected), (i, result)
            assert await versions(core_engine, streams[i]) == [], i


async def test_a_command_cancelled_before_its_turn_is_not_counted_as_committed_in_a_group(
    core_engine: AsyncEngine,
) -> None:
    """``grouped_commands``: "commands that committed in a group of more than one"."""
    groups = groups_on(core_engine)
    gate = asyncio.Event()

    async def slow(uow: UnitOfWork) -> int:
        version = await count_on(str(uuid.uuid4()))(uow)
        await gate.wait()
        return version

    async with Busy(groups):
        first = asyncio.create_task(groups.run(uuid.uuid4(), slow))
        await asyncio.sleep(0)
        queued = [
            asyncio.create_task(groups.run(uuid.uuid4(), count_on(str(uuid.uuid4())))) for _ in range(3)
        ]
        await asyncio.sleep(0.1)
        for task in queued[:2]:
            task.cancel()
        gate.set()
        results = await asyncio.wait_for(asyncio.gather(first, *queued, return_exceptions=True), LIMIT)
    await settled(groups)
    assert results[0] == 1 and results[3] == 1
    assert groups.groups_committed == 1
    assert groups.grouped_commands == 2, groups.grouped_commands  # two committed, not four


@pytest.mark.parametrize("mix", ["full", "nocancel", "okcancel", "okfail", "okrefuse"])
async def test_many_groups_under_random_failures_and_cancellations_keep_every_answer_true(
    core_engine: AsyncEngine, mix: str
) -> None:
    """Hundreds of commands, each on its own stream, some refused, some failing after a write,
    some with callers that give up at a random moment. A command told success landed exactly
    once; told an error (not a cancellation), never; a cancelled one at most once."""
    rng = random.Random(7)
    groups = groups_on(core_engine, max_size=8)
    kinds: list[str] = []
    streams: list[str] = []

    def make(kind: str, stream: str) -> Work:
        async def work(uow: UnitOfWork) -> int:
            await asyncio.sleep(rng.random() * 0.01)
            if kind == "refuse":
                await uow.load(Counter, stream)
                raise Conflict("no")
            version = await count_on(stream)(uow)
            await asyncio.sleep(rng.random() * 0.01)
            if kind == "fail":
                raise RuntimeError("after a write")
            return version

        return work

    async def call(i: int) -> object:
        kind, stream = kinds[i], streams[i]
        await asyncio.sleep(rng.random() * 0.3)
        run = groups.run(uuid.uuid4(), make(kind, stream))
        if kind == "cancel":
            return await asyncio.wait_for(run, rng.random() * 0.05)
        return await run

    for _ in range(300):
        choices = {
            "full": ["ok", "ok", "ok", "refuse", "fail", "cancel"],
            "nocancel": ["ok", "ok", "ok", "refuse", "fail"],
            "okcancel": ["ok", "ok", "ok", "cancel"],
            "okfail": ["ok", "ok", "ok", "fail"],
            "okrefuse": ["ok", "ok", "ok", "refuse"],
        }[mix]
        kinds.append(rng.choice(choices))
        streams.append(str(uuid.uuid4()))
    results = await asyncio.wait_for(
        asyncio.gather(*(call(i) for i in range(300)), return_exceptions=True), 60
    )
    await settled(groups)
    assert groups.groups_committed + groups.groups_failed > 5  # it did group
    problems = []
    for i, result in enumerate(results):
        landed = await versions(core_engine, streams[i])
        if isinstance(result, int):
            if landed != [1]:
                problems.append((i, kinds[i], result, landed))
        elif isinstance(result, TimeoutError | asyncio.CancelledError):
            if len(landed) > 1:
                problems.append((i, kinds[i], repr(result), landed))
        elif landed != []:
            problems.append((i, kinds[i], repr(result), landed))
        if kinds[i] == "refuse" and not isinstance(result, Conflict | TimeoutError):
            problems.append((i, kinds[i], repr(result), landed))
        if kinds[i] == "fail" and not isinstance(result, RuntimeError):
            problems.append((i, kinds[i], repr(result), landed))
    assert not problems, problems


async def test_a_set_local_of_one_command_reaches_the_commands_after_it_in_its_group(
    core_engine: AsyncEngine,
) -> None:
    """A known limit, documented in shared/group_commit.py: a ``SET LOCAL`` lasts until the
    transaction ends, so in a group it reaches the commands after it (here the time zone, which
    changes what ``now()::date`` answers). Grouped commands must not depend on settings; the one
    grouped command today sets only ``lock_timeout`` (its Idempotency-Key's lock), a bound the
    commands after it may inherit harmlessly. If this starts failing, the limit is gone: update
    the docstring."""
    groups = groups_on(core_engine)

    async def sets_zone(uow: UnitOfWork) -> int:
        await uow.conn.execute(sa.text("SET LOCAL TimeZone = 'Pacific/Kiritimati'"))
        await count_on(str(uuid.uuid4()))(uow)
        return 0

    async def reads_zone(uow: UnitOfWork) -> str:
        return str((await uow.conn.execute(sa.text("SELECT current_setting('TimeZone')"))).scalar())

    alone = await groups.run(uuid.uuid4(), reads_zone)  # type: ignore[arg-type]
    async with Busy(groups):
        results = await asyncio.wait_for(
            asyncio.gather(groups.run(uuid.uuid4(), sets_zone), groups.run(uuid.uuid4(), reads_zone)),  # type: ignore[arg-type]
            LIMIT,
        )
    await settled(groups)
    assert alone != "Pacific/Kiritimati"
    assert results[1] == "Pacific/Kiritimati", results
    assert await groups.run(uuid.uuid4(), reads_zone) == alone  # type: ignore[arg-type]  # not past its group


async def test_alone_a_driver_statement_cancelled_then_swallowed_is_not_told_it_committed(
    core_engine: AsyncEngine,
) -> None:
    """The same cause without a group (nothing else in flight: the plain ``retrying`` path): a
    write, then a bounded ``driver.fetch`` that times out and is swallowed. The server cancelled
    the statement and aborted the transaction; COMMIT answers "ROLLBACK" without an error."""
    groups = groups_on(core_engine)
    stream = str(uuid.uuid4())

    async def write_then_best_effort_read(uow: UnitOfWork) -> int:
        version = await count_on(stream)(uow)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(driver.fetch(uow.conn, "SELECT pg_sleep(5)"), 0.2)
        return version

    # The cancelled statement aborted the transaction (and invalidated the connection): the
    # command must be told it failed, not that its write landed.
    with pytest.raises(Exception) as caught:
        await asyncio.wait_for(groups.run(uuid.uuid4(), write_then_best_effort_read), LIMIT)
    assert not isinstance(caught.value, TimeoutError), caught.value  # not our bound: the command's answer
    assert await versions(core_engine, stream) == []


async def _cancelled_at_its_first_statement(groups: GroupCommit, stream: str) -> None:
    """A command whose caller gives up while its first statement, and with it the lazy BEGIN
    (``driver.driver`` -> the adapter's ``_start_transaction``), waits for the server."""

    async def work(uow: UnitOfWork) -> int:
        task = asyncio.current_task()
        assert task is not None
        asyncio.get_running_loop().call_soon(task.cancel)
        return await count_on(stream)(uow)

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(groups.run(uuid.uuid4(), work), LIMIT)


async def test_a_command_cancelled_during_its_lazy_begin_does_not_swallow_later_commits(
    core_engine: AsyncEngine,
) -> None:
    """Found by the random test above. asyncpg marks the connection's top transaction before it
    sends BEGIN; cancelled there, the adapter never tracks that transaction (it keeps one "only
    once BEGIN has succeeded"), so nobody rolls it back and nobody invalidates the connection
    (``driver`` catches ``Exception`` only; SQLAlchemy would invalidate on an exit exception). The
    pooled connection keeps a server-side transaction and asyncpg's stale ``_top_xact``: every
    later "BEGIN" on it is a SAVEPOINT and every "COMMIT" a RELEASE. Commands are told success,
    and nothing ever lands."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(core_engine.url, pool_size=1, max_overflow=0)  # one connection
    try:
        groups = groups_on(engine)
        await _cancelled_at_its_first_statement(groups, str(uuid.uuid4()))
        later = [str(uuid.uuid4()) for _ in range(3)]
        told = [await asyncio.wait_for(groups.run(uuid.uuid4(), count_on(s)), LIMIT) for s in later]
        landed = [await versions(core_engine, s) for s in later]  # seen from another connection
        assert (told, landed) == ([1, 1, 1], [[1], [1], [1]]), (told, landed)
    finally:
        await engine.dispose()


async def test_a_group_member_cancelled_during_the_groups_lazy_begin_loses_no_one_elses_write(
    core_engine: AsyncEngine,
) -> None:
    """The same through a group: its first member is cancelled during the group's lazy BEGIN;
    the group rolls back (a no-op on the adapter) and its connection goes back to the pool
    poisoned; the others, run again alone, and later groups on it, are told they landed."""
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(core_engine.url, pool_size=2, max_overflow=0)
    try:
        groups = groups_on(engine)
        others = [str(uuid.uuid4()) for _ in range(4)]
        async with Busy(groups):  # holds one connection; the group gets the other
            first = asyncio.create_task(_cancelled_at_its_first_statement(groups, str(uuid.uuid4())))
            await asyncio.sleep(0)
            rest = [asyncio.create_task(groups.run(uuid.uuid4(), count_on(s))) for s in others[:2]]
            await asyncio.wait_for(first, LIMIT)
            told = await asyncio.wait_for(asyncio.gather(*rest), LIMIT)
            told += await asyncio.wait_for(
                asyncio.gather(*(groups.run(uuid.uuid4(), count_on(s)) for s in others[2:])), LIMIT
            )
        await settled(groups)
        landed = [await versions(core_engine, s) for s in others]
        assert (told, landed) == ([1] * 4, [[1]] * 4), (told, landed)
    finally:
        await engine.dispose()
