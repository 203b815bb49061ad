"""The event store on the real PostgreSQL: concurrency, atomicity, upcasting."""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.eventstore import ConcurrencyError, DuplicateEventError, EventStore
from shared.tables import events, outbox
from shared.unit_of_work import UnitOfWork, retrying
from tests.integration.core.sample import Counted, Counter, Renamed, registry

pytestmark = pytest.mark.integration


def store() -> EventStore:
    return EventStore("core-test", registry)


async def test_two_concurrent_appends_at_same_version_one_wins(core_engine: AsyncEngine) -> None:
    es = store()
    stream = str(uuid.uuid4())
    async with core_engine.begin() as conn:
        await es.append(conn, es.envelopes("Counter", stream, 0, [Counted(n=1)], correlation_id=uuid.uuid4()))

    barrier = asyncio.Barrier(2)

    async def writer(n: int) -> str:
        async with core_engine.connect() as conn:
            tx = await conn.begin()
            batch = es.envelopes(
                "Counter", stream, 1, [Counted(n=n), Counted(n=n)], correlation_id=uuid.uuid4()
            )
            await barrier.wait()
            try:
                await es.append(conn, batch)
                await tx.commit()
                return "ok"
            except ConcurrencyError:
                await tx.rollback()
                return "conflict"

    results = sorted(await asyncio.gather(writer(10), writer(20)))
    assert results == ["conflict", "ok"]

    async with core_engine.connect() as conn:
        stored = await es.read_stream(conn, stream)
        queued = await conn.scalar(sa.select(sa.func.count()).select_from(outbox))
    assert [e.aggregate_version for e in stored] == [1, 2, 3]
    # The winner's two events, never one of each writer: nothing partial is stored.
    assert len({e.data["n"] for e in stored[1:]}) == 1
    assert queued == 3


async def test_unit_of_work_retries_a_conflict_from_a_fresh_read(core_engine: AsyncEngine) -> None:
    es = store()
    stream = str(uuid.uuid4())

    async def add(uow: UnitOfWork) -> int:
        counter = await uow.load(Counter, stream)
        counter.count(1)
        await asyncio.sleep(0.01)  # widen the race window
        await uow.save(counter)
        return counter.version

    await asyncio.gather(*(retrying(lambda: UnitOfWork(core_engine, es), add, attempts=20) for _ in range(8)))
    async with UnitOfWork(core_engine, es) as uow:
        counter = await uow.load(Counter, stream)
    assert counter.total == 8 and counter.version == 8


async def test_duplicate_event_id_is_refused(core_engine: AsyncEngine) -> None:
    es = store()
    eid = uuid.uuid4()
    async with core_engine.begin() as conn:
        await es.append(
            conn, es.envelopes("Counter", "a", 0, [Counted(n=1)], correlation_id=eid, event_ids=[eid])
        )
    with pytest.raises(DuplicateEventError):
        async with core_engine.begin() as conn:
            await es.append(
                conn, es.envelopes("Counter", "b", 0, [Counted(n=1)], correlation_id=eid, event_ids=[eid])
            )


async def test_version_1_event_is_read_back_through_its_upcaster_as_version_2(
    core_engine: AsyncEngine,
) -> None:
    es = store()
    stream = str(uuid.uuid4())
    async with core_engine.begin() as conn:  # what an older release of the code wrote
        await conn.execute(
            sa.insert(events).values(
                event_id=uuid.uuid4(),
                stream_type="Thing",
                stream_id=stream,
                version=1,
                event_type="Renamed",
                schema_version=1,
                occurred_at=sa.func.now(),
                correlation_id=uuid.uuid4(),
                data={"name": "Wulicang Second"},
            )
        )
    async with core_engine.connect() as conn:
        [envelope] = await es.read_stream(conn, stream)
        [stored] = await es.read_all(conn)
    assert envelope.schema_version == 2
    assert envelope.data == {"new_name": "Wulicang Second", "reason": "unknown (v1)"}
    event = es.decode(envelope)
    assert isinstance(event, Renamed) and event.new_name == "Wulicang Second"
    assert stored.envelope == envelope


async def test_read_all_returns_every_stream_in_position_order(core_engine: AsyncEngine) -> None:
    es = store()
    async with core_engine.begin() as conn:
        for i in range(5):
            await es.append(
                conn, es.envelopes("Counter", f"s{i}", 0, [Counted(n=i)], correlation_id=uuid.uuid4())
            )
    async with core_engine.connect() as conn:
        first = await es.read_all(conn, 0, limit=3)
        rest = await es.read_all(conn, first[-1].position)
    assert [s.envelope.data["n"] for s in first + rest] == [0, 1, 2, 3, 4]
