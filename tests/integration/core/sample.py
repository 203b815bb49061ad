"""A tiny event vocabulary for testing the core on its own, apart from any service."""

from __future__ import annotations

from typing import Any

from shared.aggregate import Aggregate, Conflict, applies
from shared.events import DomainEvent, EventRegistry


class Counted(DomainEvent):
    n: int


class Renamed(DomainEvent):
    """Version 2 renamed ``name`` to ``new_name`` and added ``reason``."""

    schema_version = 2
    new_name: str
    reason: str


registry = EventRegistry([Counted, Renamed])


@registry.upcaster("Renamed", from_version=1)
def _renamed_v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"new_name": data.pop("name"), "reason": "unknown (v1)", **data}


class Counter(Aggregate[str]):
    stream_type = "Counter"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.total = 0

    def count(self, n: int) -> None:
        if n <= 0:
            raise Conflict("only positive counts")
        self._raise(Counted(n=n))

    @applies(Counted)
    def _counted(self, event: Counted) -> None:
        self.total += event.n
