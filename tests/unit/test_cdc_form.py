"""Contract: a consumer reads the relay's envelope and Debezium's outbox-router form of the same
stored event as the same event (shared.inbox.decode), with the same key and contract headers."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from shared.envelope import HEADER_NAMES, EventEnvelope
from shared.inbox import PoisonMessage, decode
from shared.tracing import TRACE_HEADERS
from tests.cdc_form import connector_config, debezium_record, placements

ROW: dict[str, Any] = {
    "position": 42,
    "event_id": uuid.UUID("0b7c3f5e-5d2a-4f53-9a43-2f3f6f9b1c11"),
    "stream_type": "Member",
    "stream_id": "5f0c9d7e-1111-4c3b-8a55-3d1f2e6a7b88",
    "version": 3,
    "event_type": "CardIssued",
    "schema_version": 1,
    "occurred_at": datetime(2026, 3, 1, 8, 0, 0, 123456, tzinfo=UTC),
    "correlation_id": uuid.UUID("9d4f0b2c-3e1a-4b5c-8d6e-7f8091a2b3c4"),
    "causation_id": None,
    "data": {"card_last4": "0042", "issued_on": "2026-03-01", "nested": {"a": [1, 2]}},
}


def relay_envelope(row: dict[str, Any], producer: str = "membership") -> EventEnvelope:
    """The relay's envelope of ``row`` (what shared/relay.py's _PENDING renders)."""
    return EventEnvelope(
        event_id=row["event_id"],
        event_type=row["event_type"],
        schema_version=row["schema_version"],
        aggregate_type=row["stream_type"],
        aggregate_id=row["stream_id"],
        aggregate_version=row["version"],
        occurred_at=row["occurred_at"],
        producer=producer,
        correlation_id=row["correlation_id"],
        causation_id=row["causation_id"],
        data=row["data"],
    )


@pytest.mark.parametrize("expand_json", [True, False])
@pytest.mark.parametrize("causation", [None, uuid.UUID("1e2d3c4b-5a69-4788-9a0b-c1d2e3f40516")])
def test_both_forms_decode_to_the_same_envelope(expand_json: bool, causation: uuid.UUID | None) -> None:
    row = {**ROW, "causation_id": causation}
    relay = relay_envelope(row)
    topic, key, value, headers = debezium_record(row, expand_json=expand_json)
    assert decode(value, headers) == decode(relay.to_bytes(), relay.kafka_headers()) == relay
    assert topic == "membership.events"
    assert key == relay.kafka_key(), "same key bytes: same partition, order kept across the cutover"
    contract = {k: v for k, v in headers if k in HEADER_NAMES}
    assert contract == dict(relay.kafka_headers()), "same contract headers"


def test_every_envelope_field_is_placed_by_the_connector() -> None:
    """A field added to the envelope must be added to the connector's placements too."""
    config = connector_config()
    placed = {name for _, where, name in placements(config) if where == "envelope"}
    placed |= {"data", config["transforms.producer.static.field"]}
    assert placed == set(EventEnvelope.model_fields)
    # The relay's headers: the envelope's, and the trace context's (shared.tracing).
    headers = {name for _, where, name in placements(config) if where == "header"}
    assert headers == set(HEADER_NAMES) | set(TRACE_HEADERS)
    claims = connector_config("claims")
    assert claims["transforms.outbox.route.topic.replacement"] == "claims.events"
    assert claims["transforms.producer.static.value"] == "claims"
    assert claims["slot.name"] != config["slot.name"]


def test_the_event_id_may_come_from_debeziums_id_header_alone() -> None:
    _, _, value, headers = debezium_record(ROW)
    body = json.loads(value)
    del body["event_id"]
    assert decode(json.dumps(body).encode(), headers).event_id == ROW["event_id"]


@pytest.mark.parametrize(
    "body",
    [
        {"payload": {"n": 1}},  # a router value without our placements
        {"payload": "{not json", "event_type": "X"},
        {"schema": {}, "payload": None},
        [1, 2],
        "payload",
    ],
)
def test_anything_else_is_still_a_poison_message(body: Any) -> None:
    with pytest.raises(PoisonMessage):
        decode(json.dumps(body).encode(), [("id", str(ROW["event_id"]).encode())])


def test_a_debezium_value_without_producer_is_refused() -> None:
    _, _, value, headers = debezium_record(ROW)
    body = json.loads(value)
    del body["producer"]
    with pytest.raises(PoisonMessage):
        decode(json.dumps(body).encode(), headers)
