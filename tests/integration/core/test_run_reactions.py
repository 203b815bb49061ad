"""Reactions that take a run of consecutive events at once (``RunReaction``), and inline
projections that take one append's events at once (``BatchedProjection``): the same rows as
event by event, in the same order, and a failure still pinned to its own event.

Real PostgreSQL; the ``applied`` log shows order and repeats."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared import driver, tracing
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer, Outcome, ReactionFailed, RunReaction
from shared.unit_of_work import BatchedProjection, TransactionAborted, UnitOfWork
from tests.integration.core.test_consumer import LOG_DDL, envelope, record
from tests.integration.core.test_followed_streams import rows

pytestmark = pytest.mark.integration

_INSERT = "INSERT INTO applied (stream_id, n) VALUES ($1, $2)"


@pytest.fixture
async def engine(core_engine: AsyncEngine) -> AsyncEngine:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text(LOG_DDL))
        # A value the table refuses, so one event of a run can fail in the database itself.
        await conn.execute(sa.text("ALTER TABLE applied ADD CONSTRAINT not_666 CHECK (n <> 666)"))
    return core_engine


class Counting:
    """A RunReaction over ``record`` whose ``many`` writes every event's row in one statement."""

    def __init__(self) -> None:
        self.runs: list[int] = []  # the length of each run ``many`` was given
        self.reaction = RunReaction(record, self.many)

    async def many(self, uow: UnitOfWork, envelopes: Sequence[EventEnvelope]) -> None:
        self.runs.append(len(envelopes))
        if any(e.data.get("n") == 13 for e in envelopes):
            raise ValueError("thirteen is poison")
        await driver.executemany(uow.conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envelopes])


async def other(uow: UnitOfWork, env: EventEnvelope) -> None:
    """An ordinary reaction between runs: its row shows where it ran."""
    await uow.conn.execute(
        sa.text("INSERT INTO applied (stream_id, n) VALUES (:s, :n)"),
        {"s": env.aggregate_id, "n": -env.data["n"]},
    )


def consumer(engine: AsyncEngine, counting: Counting) -> InboxConsumer:
    return InboxConsumer(
        "runs",
        engine,
        EventStore("downstream", {}),
        {"Counted": counting.reaction, "Other": other},  # type: ignore[dict-item]
    )


async def applied(engine: AsyncEngine) -> list[tuple[object, ...]]:
    return await rows(engine, "SELECT stream_id, n FROM applied ORDER BY seq")


async def test_a_run_is_written_in_one_call_and_in_order(engine: AsyncEngine) -> None:
    counting = Counting()
    batch = [envelope(f"s{i}", 1, i) for i in range(1, 6)]
    result = await consumer(engine, counting).apply(batch)
    assert result.outcomes == [Outcome.PROCESSED] * 5
    assert counting.runs == [5]
    assert await applied(engine) == [(f"s{i}", i) for i in range(1, 6)]
    assert await rows(engine, "SELECT stream_id, version FROM consumer_streams ORDER BY stream_id") == [
        (f"s{i}", 1) for i in range(1, 6)
    ]
    again = await consumer(engine, counting).apply(batch)
    assert again.outcomes == [Outcome.DUPLICATE] * 5
    assert counting.runs == [5] and len(await applied(engine)) == 5


async def test_another_reaction_ends_the_run_before_it_runs(engine: AsyncEngine) -> None:
    counting = Counting()
    batch = [
        envelope("a", 1, 1),
        envelope("b", 1, 2),
        envelope("x", 1, 3, event_type="Other"),
        envelope("c", 1, 4),
        envelope("a", 2, 5),
        envelope("unknown", 1, 6, event_type="NobodyHandlesThis"),  # passed over: no break
        envelope("d", 1, 7),
    ]
    result = await consumer(engine, counting).apply(batch)
    assert result.outcomes[5] == Outcome.SKIPPED
    assert counting.runs == [2, 3]
    assert await applied(engine) == [("a", 1), ("b", 2), ("x", -3), ("c", 4), ("a", 5), ("d", 7)]


async def test_a_lone_event_goes_through_one(engine: AsyncEngine) -> None:
    counting = Counting()
    batch = [envelope("a", 1, 1), envelope("x", 1, 2, event_type="Other"), envelope("b", 1, 3)]
    await consumer(engine, counting).apply(batch)
    assert counting.runs == []
    assert await applied(engine) == [("a", 1), ("x", -2), ("b", 3)]


async def test_a_parked_event_and_its_release_keep_the_order(engine: AsyncEngine) -> None:
    counting = Counting()
    # s v2 arrives before s v1: parked, then released right after v1, between b and c.
    batch = [envelope("a", 1, 1), envelope("s", 2, 22), envelope("b", 1, 2), envelope("s", 1, 21)]
    batch += [envelope("c", 1, 3), envelope("d", 1, 4)]
    result = await consumer(engine, counting).apply(batch)
    assert result.outcomes[1] == Outcome.PARKED
    assert await applied(engine) == [("a", 1), ("b", 2), ("s", 21), ("s", 22), ("c", 3), ("d", 4)]
    assert await rows(engine, "SELECT version FROM consumer_streams WHERE stream_id = 's'") == [(2,)]


async def test_a_failing_run_is_applied_again_event_by_event_and_the_failure_is_its_own(
    engine: AsyncEngine,
) -> None:
    """``many`` cannot say which event broke it; the batch again through ``one`` can."""
    counting = Counting()
    batch = [envelope("a", 1, 1), envelope("b", 1, 2), envelope("c", 1, 13), envelope("d", 1, 4)]
    with pytest.raises(ReactionFailed) as failed:
        await consumer(engine, counting).apply(batch)
    assert failed.value.index == 2
    assert counting.runs == [4]
    assert await applied(engine) == []  # neither attempt committed anything
    assert await rows(engine, "SELECT * FROM inbox") == []
    # What the consumer loop does next: the events before the failing one alone, in runs again.
    result = await consumer(engine, counting).apply(batch[:2])
    assert result.outcomes == [Outcome.PROCESSED] * 2
    assert counting.runs == [4, 2]
    assert await applied(engine) == [("a", 1), ("b", 2)]


async def test_a_row_the_database_refuses_in_a_run_is_pinned_to_its_event(engine: AsyncEngine) -> None:
    counting = Counting()
    batch = [envelope("a", 1, 1), envelope("b", 1, 666), envelope("c", 1, 3)]
    with pytest.raises(ReactionFailed) as failed:
        await consumer(engine, counting).apply(batch)
    assert failed.value.index == 1
    assert "not_666" in str(failed.value.cause)
    assert await applied(engine) == []


async def test_a_many_that_appends_events_is_not_trusted(engine: AsyncEngine) -> None:
    """A run's events share one causation: events appended by ``many`` would name the wrong
    cause. Refused, and the batch goes through ``one``."""
    calls: list[int] = []

    async def appending(uow: UnitOfWork, envelopes: Sequence[EventEnvelope]) -> None:
        calls.append(len(envelopes))
        uow.appended.append(envelopes[0])  # what an append records

    inbox = InboxConsumer(
        "runs",
        engine,
        EventStore("downstream", {}),
        {"Counted": RunReaction(record, appending)},  # type: ignore[dict-item]
    )
    result = await inbox.apply([envelope("a", 1, 1), envelope("b", 1, 2)])
    assert calls == [2]
    assert result.outcomes == [Outcome.PROCESSED] * 2
    assert await applied(engine) == [("a", 1), ("b", 2)]


async def test_no_runs_while_tracing_is_on(engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every event keeps a consumer span of its own."""
    monkeypatch.setattr(tracing, "enabled", lambda: True)
    counting = Counting()
    await consumer(engine, counting).apply([envelope(f"s{i}", 1, i) for i in range(3)])
    assert counting.runs == []
    assert await applied(engine) == [(f"s{i}", i) for i in range(3)]


# --- BatchedProjection -------------------------------------------------------------------------


async def test_an_append_of_several_events_is_projected_by_many_once(engine: AsyncEngine) -> None:
    calls: list[list[int]] = []

    async def one(conn: AsyncConnection, env: EventEnvelope) -> None:
        calls.append([env.data["n"]])
        await driver.execute(conn, _INSERT, env.aggregate_id, env.data["n"])

    async def many(conn: AsyncConnection, envs: Sequence[EventEnvelope]) -> None:
        calls.append([e.data["n"] for e in envs])
        await driver.executemany(conn, _INSERT, [(e.aggregate_id, e.data["n"]) for e in envs])

    store = EventStore("downstream", {})
    single, double = [envelope("a", 1, 1)], [envelope("b", 1, 2), envelope("b", 2, 3)]
    for batch in (single, double):
        async with UnitOfWork(engine, store, projections=(BatchedProjection(one, many),)) as uow:
            await uow._append(batch)
            await uow.commit()
    assert calls == [[1], [2, 3]]
    assert await applied(engine) == [("a", 1), ("b", 2), ("b", 3)]


async def test_executemany_counts_a_refused_row_as_a_failed_statement(engine: AsyncEngine) -> None:
    """The aborted-transaction guard sees ``executemany`` as it sees ``execute``."""
    with pytest.raises(TransactionAborted):
        async with UnitOfWork(engine, EventStore("downstream", {})) as uow:
            # the error swallowed: the guard must still refuse the commit
            with contextlib.suppress(Exception):
                await driver.executemany(uow.conn, _INSERT, [("a", 1), ("b", 666)])
            await uow.commit()
    assert await applied(engine) == []
