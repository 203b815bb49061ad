"""A transaction a failed statement aborted never reports itself committed.

PostgreSQL answers COMMIT of an aborted transaction with ROLLBACK and no error. Code that catches
a database error and goes on (a command answering as if nothing happened, a reaction in a
consumer batch) would otherwise be told "committed" over nothing: a command answered 2xx with
nothing stored, a batch whose offsets move on past events that left no trace. Real PostgreSQL."""

from __future__ import annotations

import contextlib
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import driver
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer
from shared.unit_of_work import TransactionAborted, UnitOfWork, retrying
from tests.integration.core.sample import registry
from tests.integration.core.test_consumer import LOG_DDL, envelope
from tests.integration.core.test_group_commit import Busy, count_on, groups_on, stored

pytestmark = pytest.mark.integration


def uow_on(engine: AsyncEngine) -> UnitOfWork:
    return UnitOfWork(engine, EventStore("core-test", registry))


@pytest.mark.parametrize("via", ["sqlalchemy", "driver"])
async def test_a_command_that_swallows_a_failed_statement_is_refused_its_commit(
    core_engine: AsyncEngine, via: str
) -> None:
    stream = str(uuid.uuid4())

    async def write_then_swallow(uow: UnitOfWork) -> int:
        version = await count_on(stream)(uow)
        with contextlib.suppress(DBAPIError):
            if via == "sqlalchemy":
                await uow.conn.execute(sa.text("SELECT 1 / 0"))
            else:
                await driver.fetch(uow.conn, "SELECT 1 / 0")
        return version

    with pytest.raises(TransactionAborted):
        await retrying(lambda: uow_on(core_engine), write_then_swallow)
    assert await stored(core_engine, stream) == []


async def test_an_error_undone_by_a_rollback_to_its_savepoint_lets_the_transaction_commit(
    core_engine: AsyncEngine,
) -> None:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE sp_keys (k text PRIMARY KEY)"))
    stream = str(uuid.uuid4())

    async def insert_or_keep(uow: UnitOfWork) -> int:
        await uow.conn.execute(sa.text("INSERT INTO sp_keys VALUES ('a')"))
        with contextlib.suppress(IntegrityError):
            async with uow.conn.begin_nested():
                await uow.conn.execute(sa.text("INSERT INTO sp_keys VALUES ('a')"))  # taken
        async with uow.conn.begin_nested():  # released, with no failure in it
            await uow.conn.execute(sa.text("INSERT INTO sp_keys VALUES ('b')"))
        return await count_on(stream)(uow)

    assert await retrying(lambda: uow_on(core_engine), insert_or_keep) == 1
    assert [r.version for r in await stored(core_engine, stream)] == [1]
    async with core_engine.connect() as conn:
        assert sorted((await conn.execute(sa.text("SELECT k FROM sp_keys"))).scalars()) == ["a", "b"]

    # A failure *outside* any savepoint is still one, whatever savepoints came before it.
    async def savepoint_then_swallow(uow: UnitOfWork) -> int:
        async with uow.conn.begin_nested():
            await uow.conn.execute(sa.text("INSERT INTO sp_keys VALUES ('c')"))
        with contextlib.suppress(IntegrityError):
            await uow.conn.execute(sa.text("INSERT INTO sp_keys VALUES ('a')"))
        return 0

    with pytest.raises(TransactionAborted):
        await retrying(lambda: uow_on(core_engine), savepoint_then_swallow)


async def test_the_next_transaction_on_the_same_pooled_connection_starts_clean(
    core_engine: AsyncEngine,
) -> None:
    async def swallow(uow: UnitOfWork) -> int:
        with contextlib.suppress(DBAPIError):
            await uow.conn.execute(sa.text("SELECT 1 / 0"))
        return 0

    with pytest.raises(TransactionAborted):
        await retrying(lambda: uow_on(core_engine), swallow)
    stream = str(uuid.uuid4())
    for _ in range(3):  # the pool hands the same connection back
        await retrying(lambda: uow_on(core_engine), count_on(stream))
    assert [r.version for r in await stored(core_engine, stream)] == [1, 2, 3]


async def test_a_reaction_that_swallows_a_failed_statement_fails_its_batch_instead_of_losing_it(
    core_engine: AsyncEngine,
) -> None:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text(LOG_DDL))

    async def record_then_swallow(uow: UnitOfWork, env: EventEnvelope) -> None:
        await uow.conn.execute(
            sa.text("INSERT INTO applied (stream_id, n) VALUES (:s, :n)"),
            {"s": env.aggregate_id, "n": env.data["n"]},
        )
        if env.data["n"] == 3:  # the last: no reaction after it trips over the aborted transaction
            with contextlib.suppress(DBAPIError):
                await uow.conn.execute(sa.text("SELECT 1 / 0"))

    inbox = InboxConsumer(
        "swallower", core_engine, EventStore("downstream", {}), {"Counted": record_then_swallow}
    )  # type: ignore[arg-type]
    batch = [envelope("s1", 1, 1), envelope("s1", 2, 2), envelope("s1", 3, 3)]
    # Refused at commit, or by the statement the inbox sends after the last reaction: either way
    # the batch fails, and is redelivered or narrowed down to its culprit, never lost.
    with pytest.raises((TransactionAborted, DBAPIError)):
        await inbox.apply(batch)
    async with core_engine.connect() as conn:
        assert (await conn.execute(sa.text("SELECT count(*) FROM applied"))).scalar() == 0
        # Nothing marked as seen: a redelivery applies the batch (or narrows it down), not skips it.
        assert (await conn.execute(sa.text("SELECT count(*) FROM inbox"))).scalar() == 0


async def test_a_grouped_command_that_recovers_in_a_savepoint_does_not_fail_its_group(
    core_engine: AsyncEngine,
) -> None:
    groups = groups_on(core_engine)
    streams = [str(uuid.uuid4()) for _ in range(3)]

    async def recover(uow: UnitOfWork) -> int:
        with contextlib.suppress(DBAPIError):
            async with uow.conn.begin_nested():
                await uow.conn.execute(sa.text("SELECT 1 / 0"))
        return await count_on(streams[1])(uow)

    async with Busy(groups):
        results = [
            await r
            for r in [
                groups.run(uuid.uuid4(), count_on(streams[0])),
                groups.run(uuid.uuid4(), recover),
                groups.run(uuid.uuid4(), count_on(streams[2])),
            ]
        ]
    assert results == [1, 1, 1]
    for stream in streams:
        assert [r.version for r in await stored(core_engine, stream)] == [1]
    assert groups.groups_failed == 0
