"""Read models that can be thrown away and rebuilt from the service's own event store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.eventstore import EventStore
from shared.unit_of_work import InlineProjection


@dataclass(frozen=True)
class Projection:
    """``apply`` is the same function the unit of work calls inline on every append."""

    name: str
    tables: Sequence[sa.Table]
    apply: InlineProjection


async def rebuild(
    engine: AsyncEngine, store: EventStore, projection: Projection, *, batch: int = 1000
) -> int:
    """Empty the projection's tables and replay every stored event, in one transaction.

    One REPEATABLE READ transaction means one snapshot: readers see the old model until the new
    one commits, and no event can slip between the chunks. Returns the number of events replayed.
    """
    replayed = 0
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="REPEATABLE READ")
        await conn.begin()
        # Writers that would update these tables inline wait until the rebuild commits, so none
        # of their updates is deleted here and then missed by a snapshot taken before them.
        names = ", ".join(f'"{t.name}"' for t in projection.tables)
        await conn.execute(sa.text(f"LOCK TABLE {names} IN EXCLUSIVE MODE"))
        for table in reversed(projection.tables):
            await conn.execute(sa.delete(table))
        position = 0
        while True:
            chunk = await store.read_all(conn, position, limit=batch)
            if not chunk:
                break
            for stored in chunk:
                await projection.apply(conn, stored.envelope)
            position = chunk[-1].position
            replayed += len(chunk)
        await conn.commit()
    return replayed
