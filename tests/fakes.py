"""An in-memory unit of work, for unit tests of handlers only.

It keeps streams of decoded events per id and does what ``shared.unit_of_work.UnitOfWork``
does with them: ``load`` rehydrates (an id of another stream type is a fresh aggregate),
``get`` refuses a missing one, ``save`` appends with the expected-version check. It has no
connection: a handler whose rule needs a read (the plan catalogue, an enrolment fact) gets it
from ``views``, which the test replaces with ``monkeypatch.setattr(views, ...)``. Integration
tests use the real one, on the real database.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from shared.aggregate import Aggregate, NotFound
from shared.events import DomainEvent
from shared.eventstore import ConcurrencyError

A = TypeVar("A", bound=Aggregate[Any])


@dataclass
class FakeUnitOfWork:
    streams: dict[str, tuple[str, list[DomainEvent]]] = field(default_factory=dict)
    memo: dict[str, Any] = field(default_factory=dict)
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    #: Handlers pass this to ``views`` functions, which a test replaces; nothing reads it here.
    conn: Any = None

    def given(self, *aggregates: Aggregate[Any]) -> FakeUnitOfWork:
        """Store what these aggregates have raised, as if an earlier command had saved them."""
        for agg in aggregates:
            stream = self.streams.setdefault(agg.stream_id, (agg.stream_type, []))
            stream[1].extend(agg.pending_events)
            agg.mark_saved()
        return self

    def events(self, aggregate_id: uuid.UUID | str) -> list[DomainEvent]:
        return list(self.streams.get(str(aggregate_id), ("", []))[1])

    async def load(self, cls: type[A], aggregate_id: uuid.UUID | str) -> A:
        stream_type, history = self.streams.get(str(aggregate_id), (cls.stream_type, []))
        if stream_type != cls.stream_type:
            return cls(aggregate_id)
        return cls.rehydrate(aggregate_id, list(history))

    async def get(self, cls: type[A], aggregate_id: uuid.UUID | str, what: str) -> A:
        agg = await self.load(cls, aggregate_id)
        if not agg.exists:
            raise NotFound(f"{what} {aggregate_id} not found")
        return agg

    async def save(self, agg: Aggregate[Any], **_: Any) -> None:
        _, history = self.streams.setdefault(agg.stream_id, (agg.stream_type, []))
        if len(history) != agg.version:
            raise ConcurrencyError(agg.stream_id, agg.version)
        history.extend(agg.pending_events)
        agg.mark_saved()

    async def save_all(self, aggregates: list[Aggregate[Any]]) -> None:
        for agg in aggregates:
            await self.save(agg)
