"""JSON Schemas and AsyncAPI documents, generated from the very models the services use.

python -m shared.contracts.docs          # rewrite docs/contracts/
python -m shared.contracts.docs --check  # exit 1 if docs/contracts/ is out of date (CI runs it)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from shared.contracts import claims, membership
from shared.envelope import EventEnvelope
from shared.events import EventRegistry

OUT = Path(__file__).resolve().parents[2] / "docs" / "contracts"

#: service -> (topic it publishes, its registry, {topic it consumes: registry})
SERVICES: dict[str, tuple[str, EventRegistry, dict[str, EventRegistry]]] = {
    "membership": (membership.TOPIC, membership.registry, {claims.TOPIC: claims.registry}),
    "claims": (claims.TOPIC, claims.registry, {membership.TOPIC: membership.registry}),
}

HEADERS = {
    "type": "object",
    "required": ["event_type", "event_id", "schema_version", "correlation_id"],
    "properties": {
        "event_type": {"type": "string"},
        "event_id": {"type": "string", "format": "uuid"},
        "schema_version": {"type": "string", "pattern": "^[0-9]+$"},
        "correlation_id": {"type": "string", "format": "uuid"},
    },
}


def event_schema(registry: EventRegistry, event_type: str) -> dict[str, Any]:
    """The envelope's schema with ``data`` narrowed to this event type's payload."""
    payload = next(t for t in registry.types() if t.event_type == event_type).model_json_schema()
    envelope = EventEnvelope.model_json_schema()
    defs = {**envelope.pop("$defs", {}), **payload.pop("$defs", {})}
    envelope["title"] = event_type
    envelope["properties"]["event_type"] = {"const": event_type}
    envelope["properties"]["schema_version"] = {"const": registry.current_version(event_type)}
    envelope["properties"]["data"] = payload
    if defs:
        envelope["$defs"] = defs
    return envelope


def asyncapi(service: str) -> dict[str, Any]:
    topic, registry, consumes = SERVICES[service]
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for action, channel, reg in [
        ("send", topic, registry),
        *(("receive", t, r) for t, r in consumes.items()),
    ]:
        names = sorted(t.event_type for t in reg.types())
        channels[channel] = {
            "address": channel,
            "description": "key: aggregate id (UTF-8); value: JSON envelope; delivery at least once, "
            "in order per aggregate",
            "messages": {n: {"$ref": f"#/components/messages/{n}"} for n in names},
        }
        for n in names:
            messages[n] = {
                "name": n,
                "contentType": "application/json",
                "headers": HEADERS,
                "payload": event_schema(reg, n),
            }
            operations[f"{action}{n}"] = {
                "action": action,
                "channel": {"$ref": f"#/channels/{channel.replace('/', '~1')}"},
                "messages": [{"$ref": f"#/channels/{channel}/messages/{n}"}],
            }
    return {
        "asyncapi": "3.0.0",
        "info": {"title": f"{service} service events", "version": "1"},
        "defaultContentType": "application/json",
        "servers": {"local": {"host": "127.0.0.1:9092", "protocol": "kafka"}},
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages},
    }


def documents() -> dict[Path, str]:
    out: dict[Path, str] = {}
    for service, (_, registry, _) in SERVICES.items():
        out[OUT / f"{service}.asyncapi.json"] = _dump(asyncapi(service))
        for t in registry.types():
            out[OUT / "schemas" / f"{t.event_type}.v{t.schema_version}.json"] = _dump(
                event_schema(registry, t.event_type)
            )
    return out


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="fail if the files are out of date")
    args = parser.parse_args(argv)
    docs = documents()
    stale = [p for p, text in docs.items() if not p.exists() or p.read_text() != text]
    if args.check:
        for p in stale:
            print(f"out of date: {p.relative_to(OUT.parents[1])} (run python -m shared.contracts.docs)")
        return 1 if stale else 0
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(docs[p])
    print(f"{len(docs)} documents, {len(stale)} rewritten in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
