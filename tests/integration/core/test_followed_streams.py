"""An inbox consumer that follows only some aggregate types (issue 8): events of other streams
are passed over with no database work, and nothing about the followed ones changes.

Real PostgreSQL. The Kafka side is the same loop as for any consumer (``test_consumer.py``)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer, Outcome, ReactionFailed
from shared.unit_of_work import UnitOfWork
from tests.integration.core.test_consumer import LOG_DDL, envelope

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(core_engine: AsyncEngine) -> AsyncEngine:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text(LOG_DDL))
    return core_engine


async def record(uow: UnitOfWork, env: EventEnvelope) -> None:
    if env.data.get("n") == 13:
        raise ValueError("thirteen is poison")
    await uow.conn.execute(
        sa.text("INSERT INTO applied (stream_id, n) VALUES (:s, :n)"),
        {"s": env.aggregate_id, "n": env.data["n"]},
    )


def of(aggregate_type: str, stream: str, version: int, n: int) -> EventEnvelope:
    return envelope(stream, version, n).model_copy(update={"aggregate_type": aggregate_type})


def members_only(engine: AsyncEngine) -> InboxConsumer:
    return InboxConsumer(
        "members", engine, EventStore("downstream", {}), {"Counted": record}, follows=("Member",)
    )  # type: ignore[arg-type]


async def rows(engine: AsyncEngine, sql: str) -> list[tuple[object, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(sa.text(sql))).all()]


async def test_other_streams_leave_no_inbox_row_and_no_position(engine: AsyncEngine) -> None:
    batch = [
        of("Member", "m1", 1, 1),
        of("InjuryReport", "r1", 1, 100),
        of("Member", "m1", 2, 2),
        of("InjuryReport", "r2", 1, 200),
    ]
    result = await members_only(engine).apply(batch)
    assert result.outcomes == [Outcome.PROCESSED, Outcome.SKIPPED, Outcome.PROCESSED, Outcome.SKIPPED]
    assert await rows(engine, "SELECT stream_id, n FROM applied ORDER BY seq") == [("m1", 1), ("m1", 2)]
    assert await rows(engine, "SELECT stream_id, version FROM consumer_streams") == [("m1", 2)]
    inbox = {r[0] for r in await rows(engine, "SELECT event_id FROM inbox")}
    assert inbox == {batch[0].event_id, batch[2].event_id}

    # Redelivered: the followed events are duplicates as before, the others skipped again.
    again = await members_only(engine).apply(batch)
    assert again.outcomes == [Outcome.DUPLICATE, Outcome.SKIPPED, Outcome.DUPLICATE, Outcome.SKIPPED]
    assert len(await rows(engine, "SELECT * FROM applied")) == 2


async def test_a_batch_of_other_streams_only_never_touches_the_database() -> None:
    """Not even a connection: the engine points at a port nobody listens on."""
    dead = create_async_engine("postgresql+asyncpg://nobody:x@127.0.0.1:9/none", pool_pre_ping=False)
    try:
        result = await members_only(dead).apply([of("InjuryReport", "r1", 1, 1), of("Plan", "p", 3, 2)])
    finally:
        await dead.dispose()
    assert result.outcomes == [Outcome.SKIPPED, Outcome.SKIPPED]


async def test_a_failure_names_its_place_in_the_whole_batch(engine: AsyncEngine) -> None:
    """The consumer loop commits the events before a failing one and counts attempts by offset:
    the index must be the failing event's place among all the records, not among the followed."""
    batch = [
        of("InjuryReport", "r1", 1, 1),
        of("Member", "m1", 1, 1),
        of("InjuryReport", "r2", 1, 1),
        of("Member", "m1", 2, 13),  # poison
    ]
    with pytest.raises(ReactionFailed) as failed:
        await members_only(engine).apply(batch)
    assert failed.value.index == 3
    assert await rows(engine, "SELECT * FROM applied") == [], "the batch rolled back whole"


async def test_followed_streams_are_still_applied_in_order_with_gaps_parked(engine: AsyncEngine) -> None:
    inbox = members_only(engine)
    first = await inbox.apply([of("InjuryReport", "r1", 1, 9), of("Member", "m1", 2, 2)])
    assert first.outcomes == [Outcome.SKIPPED, Outcome.PARKED]
    second = await inbox.apply([of("Member", "m1", 1, 1), of("InjuryReport", "r1", 2, 9)])
    assert second.outcomes == [Outcome.PROCESSED, Outcome.SKIPPED]
    assert await rows(engine, "SELECT stream_id, n FROM applied ORDER BY seq") == [("m1", 1), ("m1", 2)]
