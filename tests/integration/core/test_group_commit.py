"""Group commit on the real PostgreSQL: shared transactions, and what a failure in one does."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Awaitable, Callable

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared import driver
from shared.aggregate import Conflict
from shared.eventstore import EventStore
from shared.group_commit import GroupCommit
from shared.tables import events
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import Counter, registry

pytestmark = pytest.mark.integration

Work = Callable[[UnitOfWork], Awaitable[int]]


def groups_on(engine: AsyncEngine, max_size: int = 16) -> GroupCommit:
    store = EventStore("core-test", registry)
    return GroupCommit(lambda cid: UnitOfWork(engine, store, correlation_id=cid), max_size=max_size)


def count_on(stream: str, n: int = 1) -> Work:
    async def work(uow: UnitOfWork) -> int:
        counter = await uow.load(Counter, stream)
        counter.count(n)
        await uow.save(counter)
        return counter.version

    return work


class Busy:
    """A command of another stream kept in flight, so that the commands under test group
    (a command that finds none in flight runs alone)."""

    def __init__(self, groups: GroupCommit) -> None:
        self.release = asyncio.Event()

        async def hold(uow: UnitOfWork) -> int:
            await self.release.wait()
            return 0

        self._task = asyncio.create_task(groups.run(uuid.uuid4(), hold))

    async def __aenter__(self) -> Busy:
        await asyncio.sleep(0.05)  # it has entered and holds its own transaction
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release.set()
        await self._task


async def stored(engine: AsyncEngine, stream: str) -> list[sa.Row[tuple[int, uuid.UUID]]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(events.c.version, events.c.correlation_id)
            .where(events.c.stream_id == stream)
            .order_by(events.c.version)
        )
        return list(rows)


async def test_concurrent_commands_share_transactions_and_keep_their_own_correlation_ids(
    core_engine: AsyncEngine,
) -> None:
    groups = groups_on(core_engine)
    streams = [str(uuid.uuid4()) for _ in range(40)]
    cids = [uuid.uuid4() for _ in streams]

    async with Busy(groups):
        versions = await asyncio.gather(
            *(groups.run(cid, count_on(s)) for cid, s in zip(cids, streams, strict=True))
        )

    assert versions == [1] * 40
    for cid, stream in zip(cids, streams, strict=True):
        assert [(r.version, r.correlation_id) for r in await stored(core_engine, stream)] == [(1, cid)]
    # 40 at once, 16 a group at most: three transactions, not forty.
    assert groups.groups_committed == 3, groups.groups_committed
    assert groups.grouped_commands == 40
    assert groups.groups_failed == 0


async def test_a_command_reads_what_the_commands_before_it_in_its_group_wrote(
    core_engine: AsyncEngine,
) -> None:
    """Ten increments of one stream in one group: no version conflict, each sees the last."""
    groups = groups_on(core_engine)
    stream = str(uuid.uuid4())

    async with Busy(groups):
        versions = await asyncio.gather(*(groups.run(uuid.uuid4(), count_on(stream)) for _ in range(10)))

    assert versions == list(range(1, 11))  # joined in order, ran in order
    assert [r.version for r in await stored(core_engine, stream)] == list(range(1, 11))
    assert (groups.groups_committed, groups.groups_failed) == (1, 0)


async def test_a_refusal_before_any_write_is_answered_and_its_group_goes_on(
    core_engine: AsyncEngine,
) -> None:
    groups = groups_on(core_engine)
    streams = [str(uuid.uuid4()) for _ in range(10)]

    works = [count_on(s, n=0 if i == 4 else 1) for i, s in enumerate(streams)]  # 0: Conflict
    async with Busy(groups):
        results = await asyncio.gather(*(groups.run(uuid.uuid4(), w) for w in works), return_exceptions=True)

    assert isinstance(results[4], Conflict)
    assert [r for i, r in enumerate(results) if i != 4] == [1] * 9
    assert (groups.groups_committed, groups.grouped_commands, groups.groups_failed) == (1, 10, 0)
    assert await stored(core_engine, streams[4]) == []


async def test_a_refusal_that_rested_on_a_group_that_then_failed_is_decided_again_alone(
    core_engine: AsyncEngine,
) -> None:
    """The second command refuses because of what the first wrote; the third then fails, so that
    write never commits, and the refusal must not stand on it."""
    groups = groups_on(core_engine)
    stream = str(uuid.uuid4())
    first_runs = 0

    async def count_one(uow: UnitOfWork) -> int:
        nonlocal first_runs
        first_runs += 1
        if first_runs > 1:
            await asyncio.sleep(0.3)  # alone, it comes after the second command
        return await count_on(stream)(uow)

    async def only_if_empty(uow: UnitOfWork) -> int:
        counter = await uow.load(Counter, stream)
        if counter.total:
            raise Conflict("already counted")
        counter.count(5)
        await uow.save(counter)
        return counter.version

    async def write_then_fail(uow: UnitOfWork) -> int:
        await count_on(str(uuid.uuid4()))(uow)
        raise RuntimeError("broke after writing")

    async with Busy(groups):
        first, second, third = await asyncio.gather(
            groups.run(uuid.uuid4(), count_one),
            groups.run(uuid.uuid4(), only_if_empty),
            groups.run(uuid.uuid4(), write_then_fail),
            return_exceptions=True,
        )

    assert isinstance(third, RuntimeError)
    assert second == 1, second  # alone, it found the stream empty: the refusal did not stand
    assert first == 2
    assert [r.version for r in await stored(core_engine, stream)] == [1, 2]
    assert groups.groups_failed == 1


async def test_writes_counts_every_statement_that_may_change_or_lock_something(
    core_engine: AsyncEngine,
) -> None:
    async with core_engine.connect() as conn:
        driver.count_writes(conn)
        start = driver.writes(conn)
        await conn.execute(sa.text("SELECT 1"))
        await driver.fetch(conn, "  select count(*) FROM events")
        assert driver.writes(conn) == start
        for sql in (
            "CREATE TEMP TABLE w (k int)",
            "INSERT INTO w VALUES (1)",
            "WITH x AS (DELETE FROM w RETURNING k) SELECT * FROM x",
            "SELECT * FROM events FOR UPDATE",
            "SELECT * FROM events\n for  no key update",
            "SELECT pg_advisory_xact_lock(1)",
            "SELECT * INTO TEMP w2 FROM w",
            "SELECT set_config('lock_timeout', '1s', true)",
            "SELECT pg_notify('c', 'x')",
            "SELECT nextval(pg_get_serial_sequence('events', 'position'))",
            "SET LOCAL lock_timeout = '1s'",
        ):
            before = driver.writes(conn)
            await driver.execute(conn, sql)
            assert driver.writes(conn) == before + 1, sql
        before = driver.writes(conn)
        await conn.execute(sa.text("UPDATE w SET k = 2"))
        assert driver.writes(conn) == before + 1
        before, failed = driver.writes(conn), driver.failures(conn)
        with pytest.raises(DBAPIError):
            await conn.execute(sa.text("SELECT 1 / 0"))  # a failure counts as both
        assert (driver.writes(conn), driver.failures(conn)) == (before + 1, failed + 1)
        await conn.rollback()
        driver.count_writes(conn, on=False)
        await conn.execute(sa.text("SELECT 1"))
        assert "writes" not in conn.info  # off: nothing counted, nothing kept on the connection


async def test_a_refusal_after_a_write_rolls_back_its_group_and_the_others_commit_once_alone(
    core_engine: AsyncEngine,
) -> None:
    groups = groups_on(core_engine)
    streams = [str(uuid.uuid4()) for _ in range(12)]
    refused = streams[5]

    async def write_then_refuse(uow: UnitOfWork) -> int:
        counter = await uow.load(Counter, refused)
        counter.count(7)
        await uow.save(counter)  # in the shared transaction
        raise Conflict("changed its mind")

    works = [write_then_refuse if s == refused else count_on(s) for s in streams]
    async with Busy(groups):
        results = await asyncio.gather(*(groups.run(uuid.uuid4(), w) for w in works), return_exceptions=True)

    assert isinstance(results[5], Conflict)
    assert [r for i, r in enumerate(results) if i != 5] == [1] * 11
    assert await stored(core_engine, refused) == []
    for stream in streams:
        if stream != refused:
            assert [r.version for r in await stored(core_engine, stream)] == [1]
    assert groups.groups_failed == 1  # the shared one; then each ran alone


async def test_a_version_conflict_inside_a_group_is_retried_alone_from_a_fresh_read(
    core_engine: AsyncEngine,
) -> None:
    groups = groups_on(core_engine)
    contested, other = str(uuid.uuid4()), str(uuid.uuid4())
    attempts = 0

    async def stale_then_fresh(uow: UnitOfWork) -> int:
        nonlocal attempts
        attempts += 1
        counter = await uow.load(Counter, contested)
        if attempts == 1:
            # Another writer commits the same version while this one decides.
            rival = Counter(contested)
            rival.count(100)
            async with core_engine.begin() as conn:
                await uow.store.append(
                    conn,
                    uow.store.envelopes(
                        "Counter", contested, 0, rival.pending_events, correlation_id=uuid.uuid4()
                    ),
                )
        counter.count(1)
        await uow.save(counter)
        return counter.version

    async with Busy(groups):
        results = await asyncio.gather(
            groups.run(uuid.uuid4(), stale_then_fresh), groups.run(uuid.uuid4(), count_on(other))
        )

    assert results == [2, 1]
    assert [r.version for r in await stored(core_engine, contested)] == [1, 2]
    assert [r.version for r in await stored(core_engine, other)] == [1]
    assert attempts >= 2 and groups.groups_failed == 1


async def test_a_command_cancelled_in_its_turn_leaves_nothing_and_takes_no_one_with_it(
    core_engine: AsyncEngine,
) -> None:
    groups = groups_on(core_engine)
    slow_stream = str(uuid.uuid4())
    others = [str(uuid.uuid4()) for _ in range(5)]
    in_turn = asyncio.Event()

    async def write_then_hang(uow: UnitOfWork) -> int:
        counter = await uow.load(Counter, slow_stream)
        counter.count(1)
        await uow.save(counter)
        in_turn.set()
        await asyncio.sleep(30)
        return 0

    slow = asyncio.create_task(groups.run(uuid.uuid4(), write_then_hang))
    await asyncio.sleep(0)  # the slow command joins first
    rest = [asyncio.create_task(groups.run(uuid.uuid4(), count_on(s))) for s in others]
    await asyncio.wait_for(in_turn.wait(), 10)
    slow.cancel()

    assert await asyncio.wait_for(asyncio.gather(*rest), 20) == [1] * 5
    with pytest.raises(asyncio.CancelledError):
        await slow
    assert await stored(core_engine, slow_stream) == []
    for stream in others:
        assert [r.version for r in await stored(core_engine, stream)] == [1]


async def test_a_commit_the_server_refuses_is_known_undone_so_each_command_runs_again_alone(
    core_engine: AsyncEngine,
) -> None:
    """Two commands of one group break a deferred constraint: COMMIT fails, nothing of the group
    landed; alone, one of the two commits and the other is refused, and the third commits."""
    async with core_engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE gc_keys (k text UNIQUE DEFERRABLE INITIALLY DEFERRED)"))
    groups = groups_on(core_engine)

    def insert(key: str) -> Work:
        async def work(uow: UnitOfWork) -> int:
            await uow.conn.execute(sa.text("INSERT INTO gc_keys VALUES (:k)"), {"k": key})
            return 1

        return work

    async with Busy(groups):
        results = await asyncio.gather(
            *(groups.run(uuid.uuid4(), insert(k)) for k in ("same", "same", "other")),
            return_exceptions=True,
        )

    assert results[0] == 1 and isinstance(results[1], IntegrityError) and results[2] == 1
    async with core_engine.connect() as conn:
        keys = sorted((await conn.execute(sa.text("SELECT k FROM gc_keys"))).scalars())
    assert keys == ["other", "same"]
    assert groups.groups_failed == 1


async def test_max_size_bounds_a_group_and_one_runs_every_command_alone(core_engine: AsyncEngine) -> None:
    bounded, alone = groups_on(core_engine, max_size=4), groups_on(core_engine, max_size=1)
    streams = [str(uuid.uuid4()) for _ in range(20)]

    async with Busy(bounded):
        assert (
            await asyncio.gather(*(bounded.run(uuid.uuid4(), count_on(s)) for s in streams[:10])) == [1] * 10
        )
    async with Busy(alone):
        assert await asyncio.gather(*(alone.run(uuid.uuid4(), count_on(s)) for s in streams[10:])) == [1] * 10

    assert bounded.groups_committed == 3  # 4 + 4 + 2
    assert alone.groups_committed == 0 and alone.grouped_commands == 0
    for stream in streams:
        assert [r.version for r in await stored(core_engine, stream)] == [1]


async def test_a_command_that_finds_no_other_in_flight_runs_alone(core_engine: AsyncEngine) -> None:
    groups = groups_on(core_engine)
    stream = str(uuid.uuid4())
    assert await groups.run(uuid.uuid4(), count_on(stream)) == 1
    assert (groups.groups_committed, groups.grouped_commands) == (0, 0)  # the plain path


async def test_when_the_database_cannot_be_reached_each_command_gets_the_error(
    core_engine: AsyncEngine,
) -> None:
    unreachable = create_async_engine("postgresql+asyncpg://nobody:x@127.0.0.1:1/none")
    try:
        groups = groups_on(unreachable)
        # The first runs alone (nothing else in flight); the two that find it in flight group.
        results = await asyncio.gather(
            *(groups.run(uuid.uuid4(), count_on(str(uuid.uuid4()))) for _ in range(3)),
            return_exceptions=True,
        )
    finally:
        await unreachable.dispose()
    assert all(isinstance(r, OSError) for r in results), results
    assert groups.groups_failed == 1 and groups.groups_committed == 0


async def test_a_command_that_goes_on_past_a_refused_statement_poisons_no_group(
    core_engine: AsyncEngine,
) -> None:
    """PostgreSQL aborts a transaction at its first failed statement and answers a later COMMIT
    with a silent ROLLBACK: a command that catches the error (and returns, or refuses as if
    nothing had been written) must not let its group "commit" the others into nothing."""
    groups = groups_on(core_engine)

    async def swallow(uow: UnitOfWork) -> int:
        with contextlib.suppress(DBAPIError):
            await uow.conn.execute(sa.text("SELECT 1 / 0"))
        return -1

    async def swallow_then_refuse(uow: UnitOfWork) -> int:
        try:
            await driver.fetch(uow.conn, "SELECT 1 / 0")
        except DBAPIError:
            raise Conflict("refused after a failed read") from None
        return -1

    for bad in (swallow, swallow_then_refuse):
        chosen = [str(uuid.uuid4()) for _ in range(3)]
        # Last in its group: no later command trips over the aborted transaction for it.
        works: list[Work] = [count_on(chosen[0]), count_on(chosen[1]), count_on(chosen[2]), bad]
        async with Busy(groups):
            results = await asyncio.gather(
                *(groups.run(uuid.uuid4(), w) for w in works), return_exceptions=True
            )
        assert results[:3] == [1, 1, 1], results
        for stream in chosen:
            assert [r.version for r in await stored(core_engine, stream)] == [1], bad.__name__
    assert groups.groups_failed == 2


async def test_a_command_cancelled_while_its_group_has_not_committed_leaves_nothing(
    core_engine: AsyncEngine,
) -> None:
    """Its turn is over and it wrote, but its caller gave up (a timeout) before the group began
    to commit: alone, nothing of it would land, and in a group neither may it."""
    groups = groups_on(core_engine)
    given_up, held = str(uuid.uuid4()), str(uuid.uuid4())
    in_turn, release = asyncio.Event(), asyncio.Event()

    async def write_then_wait(uow: UnitOfWork) -> int:
        version = await count_on(held)(uow)
        in_turn.set()
        await release.wait()  # keeps the group open after the first command's turn
        return version

    async with Busy(groups):
        first = asyncio.create_task(groups.run(uuid.uuid4(), count_on(given_up)))
        await asyncio.sleep(0)
        second = asyncio.create_task(groups.run(uuid.uuid4(), write_then_wait))
        await asyncio.wait_for(in_turn.wait(), 10)
        first.cancel()
        with pytest.raises(asyncio.CancelledError):
            await first
        release.set()
        assert await asyncio.wait_for(second, 20) == 1

    assert await stored(core_engine, given_up) == []
    assert [r.version for r in await stored(core_engine, held)] == [1]
    assert groups.groups_failed == 1


async def test_a_leader_cancelled_mid_group_lets_every_command_run_again_alone(
    core_engine: AsyncEngine,
) -> None:
    """At shutdown the leader's task may be cancelled while a command is in its turn: that
    command goes on using the shared connection, and must not find it gone."""
    groups = groups_on(core_engine)
    first_stream, second_stream, third_stream = (str(uuid.uuid4()) for _ in range(3))
    in_turn, release = asyncio.Event(), asyncio.Event()

    async def write_wait_write(uow: UnitOfWork) -> int:
        await count_on(first_stream)(uow)
        in_turn.set()
        await release.wait()
        return await count_on(second_stream)(uow)

    async with Busy(groups):
        busy_leaders = set(groups._leaders)
        first = asyncio.create_task(groups.run(uuid.uuid4(), write_wait_write))
        await asyncio.sleep(0)
        later = asyncio.create_task(groups.run(uuid.uuid4(), count_on(third_stream)))
        await asyncio.wait_for(in_turn.wait(), 10)
        (leader,) = groups._leaders - busy_leaders
        leader.cancel()
        await asyncio.sleep(0.05)
        release.set()
        assert await asyncio.wait_for(asyncio.gather(first, later), 20) == [1, 1]

    for stream in (first_stream, second_stream, third_stream):
        assert [r.version for r in await stored(core_engine, stream)] == [1], stream
    assert groups.groups_committed == 0 and groups.groups_failed == 1


async def test_a_command_that_ends_the_shared_transaction_itself_fails_its_group_loudly(
    core_engine: AsyncEngine,
) -> None:
    """COMMIT sent by a command mid-group lands the commands before it: running them again alone
    would do them twice. Nobody can be told what landed, so each is told so, and nothing runs
    twice."""
    for end in ("commit", "rollback", "COMMIT", "ROLLBACK"):
        groups = groups_on(core_engine)
        before, after = str(uuid.uuid4()), str(uuid.uuid4())

        async def ends_it(uow: UnitOfWork, end: str = end) -> int:
            if end.isupper():  # sent as SQL: SQLAlchemy does not see it
                await driver.execute(uow.conn, end)
            else:
                await getattr(uow.conn, end)()
            return 0

        async with Busy(groups):
            results = await asyncio.gather(
                groups.run(uuid.uuid4(), count_on(before)),
                groups.run(uuid.uuid4(), ends_it),
                groups.run(uuid.uuid4(), count_on(after)),
                return_exceptions=True,
            )
        assert all(isinstance(r, RuntimeError) and "ended" in str(r) for r in results), (end, results)
        landed = [r.version for r in await stored(core_engine, before)]
        assert landed == ([1] if end.lower() == "commit" else []), end  # never twice
        assert await stored(core_engine, after) == [], end  # it never ran
        assert groups.groups_committed == 0


async def test_writes_counts_what_a_comment_or_a_second_statement_would_hide(
    core_engine: AsyncEngine,
) -> None:
    async with core_engine.connect() as conn:
        driver.count_writes(conn)
        await driver.execute(conn, "CREATE TEMP TABLE w3 (k int)")
        for sql in (
            "SELECT * FROM w3 FOR/**/UPDATE",
            "SELECT * FROM w3 FOR -- a comment\n UPDATE",
            "SELECT 1; INSERT INTO w3 VALUES (1)",
        ):
            before = driver.writes(conn)
            await driver.execute(conn, sql)
            assert driver.writes(conn) == before + 1, sql
        before = driver.writes(conn)
        await driver.fetch(conn, "SELECT 1 AS one; ")  # a trailing semicolon is still one read
        await driver.fetch(conn, "SELECT '--' AS dashes")
        assert driver.writes(conn) == before
        await conn.rollback()
        driver.count_writes(conn, on=False)
