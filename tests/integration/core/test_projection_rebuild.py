"""A read model thrown away and rebuilt from the event store equals the one kept inline."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.projections import Projection, rebuild
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import Counter, registry

pytestmark = pytest.mark.integration

metadata = sa.MetaData()
totals = sa.Table(
    "totals", metadata, sa.Column("id", sa.Text, primary_key=True), sa.Column("total", sa.Integer)
)


async def apply(conn: AsyncConnection, envelope: EventEnvelope) -> None:
    if envelope.event_type == "Counted":
        from sqlalchemy.dialects.postgresql import insert

        stmt = insert(totals).values(id=envelope.aggregate_id, total=envelope.data["n"])
        await conn.execute(
            stmt.on_conflict_do_update(
                index_elements=[totals.c.id], set_={"total": totals.c.total + stmt.excluded.total}
            )
        )


async def snapshot(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {r.id: r.total for r in await conn.execute(sa.select(totals))}


async def test_rebuild_reproduces_the_inline_read_model(core_engine: AsyncEngine) -> None:
    async with core_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    es = EventStore("core-test", registry)
    streams = [str(uuid.uuid4()) for _ in range(3)]
    for i in range(30):
        async with UnitOfWork(core_engine, es, projections=(apply,)) as uow:
            counter = await uow.load(Counter, streams[i % 3])
            counter.count(i + 1)
            await uow.save(counter)
            await uow.commit()
    inline = await snapshot(core_engine)
    async with core_engine.begin() as conn:  # corrupt the read model
        await conn.execute(sa.update(totals).values(total=-1))
    calls: list[tuple[int, int]] = []
    replayed = await rebuild(
        core_engine,
        es,
        Projection("totals", [totals], apply),
        batch=7,
        progress=lambda done, total: calls.append((done, total)),
    )
    assert replayed == 30
    # Once before the first chunk, then after each of the five chunks (7+7+7+7+2), total fixed.
    assert calls == [(0, 30), (7, 30), (14, 30), (21, 30), (28, 30), (30, 30)]
    assert await snapshot(core_engine) == inline
    assert sum(inline.values()) == sum(range(1, 31))


async def test_a_batched_projection_is_rebuilt_chunk_by_chunk_to_the_same_rows(
    core_engine: AsyncEngine,
) -> None:
    """``BatchedProjection``: a rebuild hands ``many`` each chunk (one round trip for its rows)
    and ends with the read model the inline, event-by-event projection kept."""
    from collections.abc import Sequence

    from shared import driver
    from shared.unit_of_work import BatchedProjection

    async with core_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    es = EventStore("core-test", registry)
    streams = [str(uuid.uuid4()) for _ in range(4)]
    for i in range(25):
        async with UnitOfWork(core_engine, es, projections=(apply,)) as uow:
            counter = await uow.load(Counter, streams[i % 4])
            counter.count(i + 1)
            await uow.save(counter)
            await uow.commit()
    inline = await snapshot(core_engine)
    chunks: list[int] = []

    async def many(conn: AsyncConnection, envelopes: Sequence[EventEnvelope]) -> None:
        chunks.append(len(envelopes))
        await driver.executemany(
            conn,
            "INSERT INTO totals (id, total) VALUES ($1, $2)"
            " ON CONFLICT (id) DO UPDATE SET total = totals.total + excluded.total",
            [(e.aggregate_id, e.data["n"]) for e in envelopes if e.event_type == "Counted"],
        )

    async with core_engine.begin() as conn:  # corrupt the read model
        await conn.execute(sa.update(totals).values(total=-1))
    projection = Projection("totals", [totals], BatchedProjection(apply, many))
    assert await rebuild(core_engine, es, projection, batch=10) == 25
    assert chunks == [10, 10, 5]
    assert await snapshot(core_engine) == inline
