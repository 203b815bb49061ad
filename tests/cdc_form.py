"""What Debezium's outbox event router publishes for one ``events`` row, read from the connector
configuration we ship (deploy/k8s/cdc/connectors.yaml), so the contract tests follow that file.

Debezium renders the columns of a PostgreSQL row as: uuid -> its text, timestamptz ->
``io.debezium.time.ZonedTimestamp`` (ISO 8601 in UTC, e.g. ``2026-03-01T08:00:00.123456Z``),
int -> number, jsonb -> a JSON string, expanded into an object by
``table.expand.json.payload=true``. Headers go through ``SimpleHeaderConverter`` (strings as
UTF-8, numbers as their decimal text).

The row Debezium reads is the row as stored: ``stored_row`` adds what the ``events_trace_headers``
trigger fills in (shared/tables.py; tests/integration/core/test_consumer_cdc.py checks the real
trigger against it)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

CONNECTORS = Path(__file__).resolve().parent.parent / "deploy" / "k8s" / "cdc" / "connectors.yaml"


def connector_config(service: str = "membership") -> dict[str, Any]:
    for doc in yaml.safe_load_all(CONNECTORS.read_text()):
        if doc["metadata"]["name"] == f"{service}-events":
            config: dict[str, Any] = doc["spec"]["config"]
            return config
    raise LookupError(service)


def placements(config: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(column, header|envelope, name) of ``table.fields.additional.placement``."""
    out = []
    for entry in str(config["transforms.outbox.table.fields.additional.placement"]).split(","):
        column, where, *alias = entry.strip().split(":")
        out.append((column, where, alias[0] if alias else column))
    return out


def column_value(value: Any) -> Any:
    """A column as Debezium's JSON converter writes it."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    if value is None or isinstance(value, int | str | dict | list):
        return value
    return str(value)  # uuid


def stored_row(row: dict[str, Any]) -> dict[str, Any]:
    """``row`` as inserted, plus the ``traceparent``/``tracestate`` columns its trigger fills."""
    context = row.get("trace_context") or {}
    return {
        **row,
        "traceparent": context.get("traceparent") or None,
        "tracestate": context.get("tracestate") or None,
    }


def debezium_record(
    row: dict[str, Any], *, service: str = "membership", expand_json: bool = True
) -> tuple[str, bytes, bytes, list[tuple[str, bytes]]]:
    """(topic, key, value, headers) Debezium would publish for the ``events`` ``row``."""
    config = connector_config(service)
    row = stored_row(row)
    payload_column = config["transforms.outbox.table.field.event.payload"]
    payload = row[payload_column] if expand_json else json.dumps(row[payload_column])
    value: dict[str, Any] = {"payload": payload}
    headers: list[tuple[str, bytes]] = [
        ("id", str(row[config["transforms.outbox.table.field.event.id"]]).encode())
    ]
    for column, where, name in placements(config):
        rendered = column_value(row[column])
        if where == "envelope":
            value[name] = rendered
        elif rendered is not None:
            headers.append((name, str(rendered).encode()))
    value[config["transforms.producer.static.field"]] = config["transforms.producer.static.value"]
    key = str(row[config["transforms.outbox.table.field.event.key"]]).encode()
    topic = config["transforms.outbox.route.topic.replacement"]
    return topic, key, json.dumps(value).encode(), headers
