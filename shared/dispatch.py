"""One idiom for "which code handles this event": a table keyed by event class.

Aggregates, projections and reactions all register handlers with ``@table.on(EventClass)`` and
list what they deliberately skip with ``table.ignore(...)``. A misspelt class is a NameError at
import, not a handler silently never called; ``unaccounted`` lets one test per service prove
that every event type of a contract is either handled or explicitly ignored.

A table may also name what runs for an event type its registry does not know at all (a type
added upstream after this release): ``@table.unregistered``. That is a decision, not a default:
claims' coverage consumer uses it so a newer member event still advances the member's stream
version; a table without one skips such types.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from shared.events import DomainEvent, EventRegistry

H = TypeVar("H", bound=Callable[..., object])
G = TypeVar("G", bound=Callable[..., object])


class HandlerTable(Generic[H]):
    def __init__(self, name: str) -> None:
        self.name = name
        self._handlers: dict[type[DomainEvent], H] = {}
        self._ignored: set[type[DomainEvent]] = set()
        self._unregistered: H | None = None

    def on(self, *event_types: type[DomainEvent]) -> Callable[[H], H]:
        """Decorator: ``fn`` handles each of ``event_types``."""

        def register(fn: H) -> H:
            for event_type in event_types:
                if event_type in self._handlers or event_type in self._ignored:
                    raise ValueError(f"{self.name}: {event_type.__name__} registered twice")
                self._handlers[event_type] = fn
            return fn

        return register

    def ignore(self, *event_types: type[DomainEvent]) -> None:
        """Say that these types need nothing here (so the coverage test knows it is deliberate)."""
        for event_type in event_types:
            if event_type in self._handlers:
                raise ValueError(f"{self.name}: {event_type.__name__} both handled and ignored")
            self._ignored.add(event_type)

    def unregistered(self, fn: H) -> H:
        """Decorator: ``fn`` handles event types no registry of this release knows (by name)."""
        if self._unregistered is not None:
            raise ValueError(f"{self.name}: a handler for unregistered types is already set")
        self._unregistered = fn
        return fn

    @property
    def unregistered_handler(self) -> H | None:
        return self._unregistered

    def map(self, transform: Callable[[H], G]) -> HandlerTable[G]:
        """The same table with every handler transformed (e.g. bound to a clock): what is
        handled, ignored and unregistered stays exactly as declared."""
        mapped: HandlerTable[G] = HandlerTable(self.name)
        mapped._handlers = {t: transform(fn) for t, fn in self._handlers.items()}
        mapped._ignored = set(self._ignored)
        mapped._unregistered = transform(self._unregistered) if self._unregistered is not None else None
        return mapped

    def handler(self, event_type: type[DomainEvent]) -> H | None:
        return self._handlers.get(event_type)

    def by_name(self) -> dict[str, H]:
        """The handlers keyed by event type name (what arrives on the wire)."""
        return {t.event_type: fn for t, fn in self._handlers.items()}

    def ignored_names(self) -> set[str]:
        return {t.event_type for t in self._ignored}

    def handled(self) -> set[type[DomainEvent]]:
        return set(self._handlers)

    def accounted(self) -> set[type[DomainEvent]]:
        return set(self._handlers) | self._ignored

    def unaccounted(self, registry: EventRegistry | Iterable[type[DomainEvent]]) -> list[str]:
        """Names of event types in ``registry`` this table neither handles nor ignores."""
        types = registry.types() if isinstance(registry, EventRegistry) else list(registry)
        return sorted(t.event_type for t in types if t not in self.accounted())
