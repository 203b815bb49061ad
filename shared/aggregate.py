"""Base for event-sourced aggregates: pure Python, no I/O.

A command method checks its rules against current state and calls ``_raise(event)``; state only
ever changes in ``_on_<EventType>`` handlers, so replaying the stream rebuilds exactly that state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar, Self

from shared.events import DomainEvent


class DomainError(Exception):
    """A command broke a business rule. ``field`` names the input at fault, if one is."""

    status = 409

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or type(self).__name__


class InvalidInput(DomainError):
    """The request is well-formed but its values break a rule (answered as 422)."""

    status = 422


class Conflict(DomainError):
    """The command conflicts with current state (answered as 409)."""

    status = 409


class NotFound(DomainError):
    status = 404


class Aggregate:
    stream_type: ClassVar[str]

    def __init__(self, aggregate_id: str) -> None:
        self.id = aggregate_id
        self.version = 0
        self._pending: list[DomainEvent] = []

    @classmethod
    def rehydrate(cls, aggregate_id: str, history: Iterable[DomainEvent]) -> Self:
        agg = cls(aggregate_id)
        for event in history:
            agg._apply(event)
        return agg

    @property
    def exists(self) -> bool:
        return self.version > 0

    @property
    def pending_events(self) -> list[DomainEvent]:
        return list(self._pending)

    def mark_saved(self) -> None:
        self.version += len(self._pending)
        self._pending.clear()

    def _raise(self, event: DomainEvent) -> None:
        self._mutate(event)
        self._pending.append(event)

    def _apply(self, event: DomainEvent) -> None:
        self._mutate(event)
        self.version += 1

    def _mutate(self, event: DomainEvent) -> None:
        handler = getattr(self, f"_on_{event.event_type}", None)
        if handler is not None:
            handler(event)
