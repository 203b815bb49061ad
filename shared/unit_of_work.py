"""One database transaction that a command or an event reaction runs in.

Events appended, outbox rows, inline read-model updates, the inbox record and the idempotency
record all commit together or not at all.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncTransaction

from shared.aggregate import Aggregate, NotFound
from shared.driver import failures
from shared.envelope import EventEnvelope
from shared.eventstore import ConcurrencyError, EventStore
from shared.locks import LockSpace, xact_lock_sql
from shared.logs import log_context

A = TypeVar("A", bound=Aggregate[Any])
T = TypeVar("T")

#: Called with every envelope appended in this unit of work, inside its transaction.
InlineProjection = Callable[[AsyncConnection, EventEnvelope], Awaitable[None]]


@dataclass(frozen=True)
class BatchedProjection:
    """An inline projection that can also take all the envelopes of one append at once, and so
    write the rows of several events with one statement (claims files a report's claims in one
    append: one round trip for their rows, not one each), and a rebuild replays each chunk of
    the store through ``many``. ``one`` stays the definition: ``many`` must leave exactly the
    rows ``one`` would, envelope by envelope in order, whatever types it is given."""

    one: InlineProjection
    many: Callable[[AsyncConnection, Sequence[EventEnvelope]], Awaitable[None]]

    async def __call__(self, conn: AsyncConnection, envelope: EventEnvelope) -> None:
        await self.one(conn, envelope)


class TransactionAborted(RuntimeError):
    """Commit refused: a statement failed in the transaction and its error was not let through."""


class UnitOfWork:
    def __init__(
        self,
        engine: AsyncEngine,
        store: EventStore,
        *,
        correlation_id: uuid.UUID | None = None,
        causation_id: uuid.UUID | None = None,
        projections: tuple[InlineProjection, ...] = (),
    ) -> None:
        self._engine = engine
        self.store = store
        self.correlation_id = correlation_id or uuid.uuid4()
        self.causation_id = causation_id
        self._projections = projections
        self._conn: AsyncConnection | None = None
        self._tx: AsyncTransaction | None = None
        self.appended: list[EventEnvelope] = []
        #: Facts read once per transaction and shared by everything it runs (a consumer batch
        #: applies hundreds of events in one unit of work); whoever changes a fact drops its entry.
        self.memo: dict[str, Any] = {}

    @property
    def conn(self) -> AsyncConnection:
        if self._conn is None:
            raise RuntimeError("unit of work not started")
        return self._conn

    async def __aenter__(self) -> Self:
        # Log lines written while this unit of work runs name its correlation id and, for a
        # reaction, the event it reacts to (its causation).
        self._log_context = log_context(correlation_id=self.correlation_id, event_id=self.causation_id)
        self._log_context.__enter__()
        try:
            self._conn = await self._engine.connect()
            self._tx = await self._conn.begin()
        except BaseException:
            self._log_context.__exit__(None, None, None)
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        assert self._conn is not None and self._tx is not None
        try:
            if self._tx.is_active:
                await self._tx.rollback()
        finally:
            try:
                await self._conn.close()
            finally:
                self._conn = self._tx = None
                self._log_context.__exit__(None, None, None)

    @contextmanager
    def serving(self, correlation_id: uuid.UUID) -> Iterator[None]:
        """Within the block, this unit of work acts for another command of its group
        (shared/group_commit.py): events it appends carry that command's correlation id, and log
        lines name it."""
        previous, self.correlation_id = self.correlation_id, correlation_id
        try:
            with log_context(correlation_id=correlation_id):
                yield
        finally:
            self.correlation_id = previous

    @property
    def transaction_open(self) -> bool:
        """Its transaction is still the one it began: nobody committed or rolled it back."""
        return self._tx is not None and self._tx.is_active

    async def commit(self) -> None:
        assert self._tx is not None
        if failures(self.conn):
            # PostgreSQL answers COMMIT of an aborted transaction with a ROLLBACK and no error:
            # reported as committed, a command would be answered and a batch's offsets moved on
            # over nothing.
            raise TransactionAborted(
                "a statement of this transaction failed and the error was caught: nothing of it"
                " can commit (to go on after an error, run the statement in conn.begin_nested():"
                " a savepoint made in SQL is not seen)"
            )
        await self._tx.commit()

    async def lock(self, space: LockSpace, name: uuid.UUID | str) -> None:
        """Hold ``(space, name)`` until this transaction ends: for a hot stream whose concurrent
        commands would otherwise lose the version race more often than they retry."""
        await self.conn.execute(sa.text(xact_lock_sql(space)), {"name": str(name)})

    async def load(self, cls: type[A], aggregate_id: uuid.UUID | str) -> A:
        history = await self.store.read_stream(self.conn, str(aggregate_id))
        if history and history[0].aggregate_type != cls.stream_type:
            # An id of another kind of thing (a union's id given as a member's): to this type it
            # does not exist, rather than having another aggregate's events folded into it.
            return cls(aggregate_id)
        return cls.rehydrate(aggregate_id, (self.store.decode(e) for e in history))

    async def get(self, cls: type[A], aggregate_id: uuid.UUID | str, what: str) -> A:
        agg = await self.load(cls, aggregate_id)
        if not agg.exists:
            raise NotFound(f"{what} {aggregate_id} not found")
        return agg

    async def save(self, agg: Aggregate[Any], *, event_ids: list[uuid.UUID] | None = None) -> None:
        batch = self.store.envelopes(
            agg.stream_type,
            agg.stream_id,
            agg.version,
            agg.pending_events,
            correlation_id=self.correlation_id,
            causation_id=self.causation_id,
            event_ids=event_ids,
        )
        await self._append(batch)
        agg.mark_saved()

    async def save_all(self, aggregates: list[Aggregate[Any]]) -> None:
        """Save several aggregates' new events in one statement (one round trip, not one each)."""
        batch = [
            envelope
            for agg in aggregates
            for envelope in self.store.envelopes(
                agg.stream_type,
                agg.stream_id,
                agg.version,
                agg.pending_events,
                correlation_id=self.correlation_id,
                causation_id=self.causation_id,
            )
        ]
        await self._append(batch)
        for agg in aggregates:
            agg.mark_saved()

    async def _append(self, batch: list[EventEnvelope]) -> None:
        await self.store.append(self.conn, batch)
        # Projection by projection (each is its own read model, independent of the others), each
        # in the order of the events.
        for project in self._projections:
            if isinstance(project, BatchedProjection) and len(batch) > 1:
                await project.many(self.conn, batch)
            else:
                for envelope in batch:
                    await project(self.conn, envelope)
        self.appended.extend(batch)


async def retrying(
    make_uow: Callable[[], UnitOfWork],
    work: Callable[[UnitOfWork], Awaitable[T]],
    *,
    attempts: int = 3,
) -> T:
    """Run ``work`` in a fresh unit of work and commit; on a version conflict, reread and retry."""
    for attempt in range(1, attempts + 1):
        committing = False
        try:
            async with make_uow() as uow:
                result = await work(uow)
                committing = True
                await uow.commit()
                return result
        except ConcurrencyError:
            if attempt == attempts:
                raise
        except DBAPIError as exc:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # its caller gave up: not to be run again, whatever the error says
            # A pooled connection that died (database restarted) before COMMIT was sent: nothing
            # was committed, so the command is safe to run again. Lost *during* COMMIT, the server
            # may have committed: running it again could do it twice, so the error goes up.
            if committing or not exc.connection_invalidated or attempt == attempts:
                raise
    raise AssertionError("unreachable")
