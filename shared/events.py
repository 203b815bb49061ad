"""Event payload types and the registry that knows their schema versions and upcasters.

Payloads are pydantic models: the domain raises them, the store persists them, and JSON Schema /
AsyncAPI are generated from them, so the contract cannot drift from the code.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class DomainEvent(BaseModel):
    """Base of every event payload. ``event_type`` defaults to the class name."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "event_type" not in cls.__dict__:
            cls.event_type = cls.__name__


class UnknownEventType(LookupError):
    pass


class EventRegistry:
    """Maps event type names to payload classes, and lifts old schema versions to the current one."""

    def __init__(
        self, types: Iterable[type[DomainEvent]] = (), *, older: Iterable[type[DomainEvent]] = ()
    ) -> None:
        self._types: dict[str, type[DomainEvent]] = {}
        self._older: dict[str, dict[int, type[DomainEvent]]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        for t in types:
            self.register(t)
        for t in older:
            self.register_older(t)

    def register(self, event_cls: type[DomainEvent]) -> type[DomainEvent]:
        self._types[event_cls.event_type] = event_cls
        return event_cls

    def register_older(self, event_cls: type[DomainEvent]) -> type[DomainEvent]:
        """Keep the model of a superseded schema version: its schema stays published (integrators
        still receive such events on replays) and tests check the upcaster against it."""
        self._older.setdefault(event_cls.event_type, {})[event_cls.schema_version] = event_cls
        return event_cls

    def models(self, event_type: str) -> dict[int, type[DomainEvent]]:
        """Every version's model of ``event_type``, oldest first, the current one last."""
        current = self._cls(event_type)
        older = self._older.get(event_type, {})
        return {v: older[v] for v in sorted(older) if v < current.schema_version} | {
            current.schema_version: current
        }

    def upcaster(self, event_type: str, from_version: int) -> Callable[[Upcaster], Upcaster]:
        """Register ``fn`` that turns ``from_version`` data into ``from_version + 1`` data."""

        def register(fn: Upcaster) -> Upcaster:
            self._upcasters[(event_type, from_version)] = fn
            return fn

        return register

    def __contains__(self, event_type: object) -> bool:
        return event_type in self._types

    def types(self) -> list[type[DomainEvent]]:
        return list(self._types.values())

    def current_version(self, event_type: str) -> int:
        return self._cls(event_type).schema_version

    def upcast(self, event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
        target = self.current_version(event_type)
        while version < target:
            step = self._upcasters.get((event_type, version))
            if step is None:
                raise LookupError(f"no upcaster for {event_type} v{version} -> v{version + 1}")
            data = step(dict(data))
            version += 1
        return data

    def decode(self, event_type: str, version: int, data: dict[str, Any]) -> DomainEvent:
        return self._cls(event_type).model_validate(self.upcast(event_type, version, data))

    def json_schemas(self) -> dict[str, dict[str, Any]]:
        return {name: cls.model_json_schema() for name, cls in sorted(self._types.items())}

    def _cls(self, event_type: str) -> type[DomainEvent]:
        try:
            return self._types[event_type]
        except KeyError:
            raise UnknownEventType(event_type) from None
