"""Pure checks of the envelope and the event registry (no I/O)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest

from shared.envelope import EventEnvelope
from shared.events import DomainEvent, EventRegistry, UnknownEventType


class Moved(DomainEvent):
    schema_version = 3
    to: str
    floor: int


def registry_with_chain() -> EventRegistry:
    reg = EventRegistry([Moved])

    @reg.upcaster("Moved", 1)
    def v1(data: dict[str, object]) -> dict[str, object]:
        return {"to": data["destination"]}

    @reg.upcaster("Moved", 2)
    def v2(data: dict[str, object]) -> dict[str, object]:
        return {**data, "floor": 0}

    return reg


def test_upcasters_chain_from_any_old_version_to_the_current_one() -> None:
    reg = registry_with_chain()
    assert reg.decode("Moved", 1, {"destination": "Shunyi"}) == Moved(to="Shunyi", floor=0)
    assert reg.decode("Moved", 2, {"to": "Shunyi"}) == Moved(to="Shunyi", floor=0)
    assert reg.decode("Moved", 3, {"to": "Shunyi", "floor": 2}) == Moved(to="Shunyi", floor=2)


def test_a_missing_upcaster_is_an_error_not_a_silent_pass() -> None:
    reg = EventRegistry([Moved])
    with pytest.raises(LookupError, match="no upcaster for Moved v1"):
        reg.decode("Moved", 1, {"destination": "x"})


def test_unknown_event_type_is_reported_as_such() -> None:
    with pytest.raises(UnknownEventType):
        EventRegistry().decode("Nope", 1, {})


def test_event_type_defaults_to_class_name_and_schema_is_generated() -> None:
    assert Moved.event_type == "Moved"
    schema = registry_with_chain().json_schemas()["Moved"]
    assert set(schema["required"]) == {"to", "floor"}


def test_envelope_round_trip_ignores_unknown_fields_and_writes_rfc3339_utc() -> None:
    env = EventEnvelope(
        event_id=uuid.uuid4(),
        event_type="Moved",
        schema_version=3,
        aggregate_type="Thing",
        aggregate_id="a1",
        aggregate_version=1,
        occurred_at=datetime(2016, 8, 2, 9, 30, tzinfo=UTC),
        producer="test",
        correlation_id=uuid.uuid4(),
        data={"to": "x", "floor": 1},
    )
    raw = json.loads(env.to_bytes())
    assert raw["occurred_at"] == "2016-08-02T09:30:00Z"
    assert set(raw) == {
        "event_id",
        "event_type",
        "schema_version",
        "aggregate_type",
        "aggregate_id",
        "aggregate_version",
        "occurred_at",
        "producer",
        "correlation_id",
        "causation_id",
        "data",
    }
    raw["added_later"] = 1
    assert EventEnvelope.from_bytes(json.dumps(raw).encode()) == env
    assert dict(env.kafka_headers())["event_type"] == b"Moved"
