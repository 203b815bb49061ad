"""Base for event-sourced aggregates: pure Python, no I/O.

A command method checks its rules against current state and calls ``_raise(event)``; state only
ever changes in methods marked ``@applies(EventClass)``, so replaying the stream rebuilds exactly
that state. Types a stream holds but that change nothing go in ``ignores``; any other type is a
programming error and raises instead of being skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Generic, Self, TypeVar

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


class UnaccountedEvent(TypeError):
    """An aggregate met an event type it neither applies nor ignores: a programming error (a
    handler forgotten or marked for the wrong class), never skipped silently."""


F = TypeVar("F", bound=Callable[..., None])


def applies(*event_types: type[DomainEvent]) -> Callable[[F], F]:
    """Marks an aggregate method as the state change for each of ``event_types``."""

    def mark(fn: F) -> F:
        fn.__applies__ = event_types  # type: ignore[attr-defined]
        return fn

    return mark


#: What identifies an aggregate: a UUID for most, a code for some (a catalogue plan).
Id = TypeVar("Id", uuid.UUID, str)


class Aggregate(Generic[Id]):
    """``id`` is typed (``Aggregate[uuid.UUID]``); ``stream_id`` is its text, for the store."""

    stream_type: ClassVar[str]
    #: Event types of this stream that change no state.
    ignores: ClassVar[tuple[type[DomainEvent], ...]] = ()
    _appliers: ClassVar[dict[type[DomainEvent], Callable[[Any, Any], None]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table: dict[type[DomainEvent], Callable[[Any, Any], None]] = {}
        for klass in reversed(cls.__mro__):
            for attr in vars(klass).values():
                for event_type in getattr(attr, "__applies__", ()):
                    table[event_type] = attr
        cls._appliers = table

    @classmethod
    def accounted_events(cls) -> set[type[DomainEvent]]:
        """Every event type this aggregate applies or deliberately ignores."""
        return set(cls._appliers) | set(cls.ignores)

    def __init__(self, aggregate_id: Id) -> None:
        self.id: Id = aggregate_id
        self.version = 0
        self._pending: list[DomainEvent] = []

    @classmethod
    def rehydrate(cls, aggregate_id: Id, history: Iterable[DomainEvent]) -> Self:
        agg = cls(aggregate_id)
        for event in history:
            agg._apply(event)
        return agg

    @property
    def stream_id(self) -> str:
        return str(self.id)

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
        applier = self._appliers.get(type(event))
        if applier is not None:
            applier(self, event)
            return
        if type(event) in self.ignores:
            return
        raise UnaccountedEvent(
            f"{type(self).__name__} neither applies nor ignores {event.event_type}: "
            f"mark a method @applies({type(event).__name__}) or list it in {type(self).__name__}.ignores"
        )
