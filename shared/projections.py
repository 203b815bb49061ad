"""Read models that can be thrown away and rebuilt from the service's own event store."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.eventstore import EventStore
from shared.unit_of_work import BatchedProjection, InlineProjection

log = logging.getLogger(__name__)

#: ``progress(done, total)``: called after every chunk (and once before the first).
ProgressCallback = Callable[[int, int], None]


@dataclass(frozen=True)
class Projection:
    """``apply`` is the same function the unit of work calls inline on every append; a
    ``BatchedProjection`` replays each chunk of events through its ``many``."""

    name: str
    tables: Sequence[sa.Table]
    apply: InlineProjection


async def rebuild(
    engine: AsyncEngine,
    store: EventStore,
    projection: Projection,
    *,
    batch: int = 1000,
    progress: ProgressCallback | None = None,
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
        if progress is not None:
            # Counted in the same snapshot as the replay, so done reaches total exactly.
            total = int((await conn.execute(sa.text("SELECT count(*) FROM events"))).scalar_one())
            progress(0, total)
        while True:
            chunk = await store.read_all(conn, position, limit=batch)
            if not chunk:
                break
            if isinstance(projection.apply, BatchedProjection):
                # A chunk's rows in a few round trips instead of one or more per event.
                await projection.apply.many(conn, [stored.envelope for stored in chunk])
            else:
                for stored in chunk:
                    await projection.apply(conn, stored.envelope)
            position = chunk[-1].position
            replayed += len(chunk)
            if progress is not None:
                progress(replayed, total)
        await conn.commit()
    return replayed


class RebuildProgress:
    """The operator's view of a long rebuild: events done/total, rate and ETA.

    On a terminal it rewrites one line on stderr (at most ~10 times a second); otherwise (a log
    file, a CI job) it logs a line every ``log_every`` seconds, so the output stays readable.
    """

    def __init__(
        self,
        *,
        stream: TextIO | None = None,
        log_every: float = 5.0,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        self.tty = self.stream.isatty()
        self.log_every = log_every
        self.clock = clock
        self.started = clock()
        self.last_shown = float("-inf")
        self.done = 0
        self.total = 0

    def __call__(self, done: int, total: int) -> None:
        self.done, self.total = done, total
        now = self.clock()
        interval = 0.1 if self.tty else self.log_every
        if done < total and now - self.last_shown < interval:
            return
        self.last_shown = now
        if self.tty:
            self.stream.write("\r" + self.line(now) + ("\n" if done >= total else ""))
            self.stream.flush()
        elif done > 0:
            log.info("rebuild: %s", self.line(now))

    def rate(self, now: float | None = None) -> float:
        elapsed = (self.clock() if now is None else now) - self.started
        return self.done / elapsed if elapsed > 0 else 0.0

    def line(self, now: float) -> str:
        rate = self.rate(now)
        share = f" ({100 * self.done / self.total:.0f} %)" if self.total else ""
        eta = f", ETA {(self.total - self.done) / rate:.0f} s" if rate and self.done < self.total else ""
        return f"{self.done:,}/{self.total:,} events{share}, {rate:,.0f} events/s{eta}"

    def summary(self) -> str:
        """The final line: count, time and rate."""
        now = self.clock()
        return f"{self.done:,} events in {now - self.started:.1f} s ({self.rate(now):,.0f} events/s)"
