"""JSON Schemas and AsyncAPI 3 documents, generated from the very models the services use.

python -m shared.contracts.docs          # rewrite docs/contracts/
python -m shared.contracts.docs --check  # exit 1 if docs/contracts/ is out of date

A published ``schemas/<Type>.v<N>.json`` is a promise to integrators: rewriting it is refused when
the model changed in a breaking way (see ``shared.contracts.compat``); such a change needs
``schema_version`` N+1 and an upcaster. A new service is one more ``ServiceContract`` in SERVICES.
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared import kafka
from shared.contracts import activities, claims, compat, counseling, guide, mediation, membership
from shared.contracts.examples import examples, kafka_headers
from shared.envelope import EventEnvelope
from shared.events import DomainEvent, EventRegistry
from shared.kafka import dlq_topic

OUT = Path(__file__).resolve().parents[2] / "docs" / "contracts"
GUIDE = OUT.parent / "EVENTS.md"

#: The dialect pydantic generates; the standalone schema files declare it.
JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
#: Inside AsyncAPI the payloads are declared draft-07 (the newest JSON Schema draft the AsyncAPI 3
#: parser knows); the generated schemas use no keyword on which the two drafts differ (a test checks
#: each schema against both metaschemas).
ASYNCAPI_SCHEMA_FORMAT = "application/schema+json;version=draft-07"
DRAFT_07 = "http://json-schema.org/draft-07/schema#"
ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING = "0.5.0"


@dataclass(frozen=True)
class Subscription:
    """A consumer of an upstream topic; its consumer group is ``<service>.<consumer>``."""

    topic: str
    registry: EventRegistry
    consumer: str


@dataclass(frozen=True)
class ServiceContract:
    name: str
    topic: str
    registry: EventRegistry
    consumes: tuple[Subscription, ...] = ()

    def group_id(self, sub: Subscription) -> str:
        return f"{self.name}.{sub.consumer}"


#: Every service with events. counseling and mediation join here when they exist.
SERVICES: tuple[ServiceContract, ...] = (
    ServiceContract(
        "membership",
        membership.TOPIC,
        membership.registry,
        (
            Subscription(claims.TOPIC, claims.registry, "claims"),
            Subscription(activities.TOPIC, activities.registry, "activities"),
            Subscription(mediation.TOPIC, mediation.registry, "mediation"),
        ),
    ),
    ServiceContract(
        "claims",
        claims.TOPIC,
        claims.registry,
        (Subscription(membership.TOPIC, membership.registry, "coverage"),),
    ),
    ServiceContract(
        "mediation",
        mediation.TOPIC,
        mediation.registry,
        (Subscription(membership.TOPIC, membership.registry, "unions"),),
    ),
    ServiceContract(
        "counseling",
        counseling.TOPIC,
        counseling.registry,
        (Subscription(membership.TOPIC, membership.registry, "members"),),
    ),
    ServiceContract(
        "activities",
        activities.TOPIC,
        activities.registry,
        (Subscription(membership.TOPIC, membership.registry, "members"),),
    ),
)

#: Where the brokers are. Same topics, keys and headers on each.
SERVERS: dict[str, dict[str, Any]] = {
    "local": {
        "host": "127.0.0.1:9092",
        "protocol": "kafka",
        "description": "`make up` and the tests: a single KRaft broker on the developer's machine.",
    },
    "compose": {
        "host": "kafka:9092",
        "protocol": "kafka",
        "description": "deploy/docker-compose.yml, from other containers (the host reaches it on "
        "127.0.0.1:${UNION_KAFKA_HOST_PORT:-9092}).",
    },
    "kubernetes": {
        "host": "union-kafka-kafka-bootstrap.union-services.svc:9092",
        "protocol": "kafka",
        "description": "deploy/k8s: the Strimzi bootstrap Service, plain in-cluster listener; its "
        "NetworkPolicy admits only the service pods, so an integrator's pod must be added there.",
    },
}

#: Topic settings as deploy/k8s/base/kafka-topics.yaml creates them.
PARTITIONS = 3
EVENTS_RETENTION_MS = kafka.EVENTS_RETENTION_MS
DLQ_RETENTION_MS = kafka.DLQ_RETENTION_MS

EVENT_HEADERS = ("event_type", "event_id", "schema_version", "correlation_id")

#: Added by shared/inbox.py to a message it dead-letters (beside the original headers).
DLQ_HEADERS: dict[str, dict[str, Any]] = {
    "dlq_error": {"type": "string", "maxLength": 500, "description": "exception type and message"},
    "dlq_attempts": {"type": "string", "pattern": "^[0-9]+$", "description": "attempts made"},
    "dlq_consumer": {"type": "string", "description": "the inbox consumer's name (e.g. coverage)"},
    "dlq_original_topic": {"type": "string"},
    "dlq_original_partition": {"type": "string", "pattern": "^[0-9]+$"},
    "dlq_original_offset": {"type": "string", "pattern": "^[0-9]+$"},
}

DELIVERY = (
    "Key: the aggregate id (UTF-8), so one aggregate's events share a partition and stay in order. "
    "Value: the JSON envelope. Delivery is at least once, in order per aggregate: deduplicate by "
    "`event_id`, tolerate unknown fields and skip unknown event types. An event type may arrive in "
    "an older `schema_version` (replays republish events as stored): read every version listed."
)


def versions(registry: EventRegistry) -> Iterator[tuple[str, int, type[DomainEvent]]]:
    """Every (event type, schema version, model) the registry can read, oldest version first."""
    for event_type in sorted(t.event_type for t in registry.types()):
        for version, model in registry.models(event_type).items():
            yield event_type, version, model


def event_schema(registry: EventRegistry, event_type: str, version: int | None = None) -> dict[str, Any]:
    """The envelope's JSON Schema with ``data`` narrowed to one version of one event type."""
    version = registry.current_version(event_type) if version is None else version
    payload = registry.models(event_type)[version].model_json_schema()
    envelope = EventEnvelope.model_json_schema()
    defs = {**envelope.pop("$defs", {}), **payload.pop("$defs", {})}
    schema: dict[str, Any] = {"$schema": JSON_SCHEMA_DIALECT, **envelope}
    schema["title"] = f"{event_type} v{version}"
    schema["description"] = f"{event_type}, schema_version {version}, in its envelope. {DELIVERY}"
    schema["properties"]["event_type"] = {"const": event_type}
    schema["properties"]["schema_version"] = {"const": version}
    schema["properties"]["data"] = payload
    if defs:
        schema["$defs"] = defs
    return schema


def schema_path(event_type: str, version: int) -> Path:
    return OUT / "schemas" / f"{event_type}.v{version}.json"


def message_id(event_type: str, version: int) -> str:
    return f"{event_type}.v{version}"


def _rewrite_refs(node: Any, names: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out = {k: _rewrite_refs(v, names) for k, v in node.items()}
        ref = out.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            out["$ref"] = f"#/components/schemas/{names[ref.removeprefix('#/$defs/')]}"
        return out
    if isinstance(node, list):
        return [_rewrite_refs(v, names) for v in node]
    return node


def _hoist(schema: dict[str, Any], prefix: str, components: dict[str, Any]) -> dict[str, Any]:
    """Move ``$defs`` into AsyncAPI's components/schemas (refs there resolve from the document
    root, not from the payload) and point the refs at them. Same name, other shape: prefixed."""
    schema = copy.deepcopy(schema)
    defs: dict[str, Any] = schema.pop("$defs", {})
    plain = {name: _rewrite_refs(d, {n: n for n in defs}) for name, d in defs.items()}
    names = {n: n if components.get(n, d) == d else f"{prefix}.{n}" for n, d in plain.items()}
    for name, definition in defs.items():
        components[names[name]] = _rewrite_refs(definition, names)
    schema.pop("$schema", None)
    hoisted: dict[str, Any] = _rewrite_refs(schema, names)
    return hoisted


def _headers(event_type: str, version: int) -> dict[str, Any]:
    return {
        "type": "object",
        "required": list(EVENT_HEADERS),
        "properties": {
            "event_type": {"type": "string", "const": event_type},
            "event_id": {"type": "string", "format": "uuid", "description": "deduplicate by this"},
            "schema_version": {"type": "string", "const": str(version)},
            "correlation_id": {"type": "string", "format": "uuid"},
            # Only while the producer traces (shared/tracing.py): W3C Trace Context.
            "traceparent": {
                "type": "string",
                "pattern": "^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
                "description": "W3C Trace Context of the span that recorded the event; present only "
                "while the producing service traces (OpenTelemetry, OTEL_* variables)",
            },
            "tracestate": {"type": "string", "description": "W3C Trace Context, with traceparent"},
        },
    }


def _dead_letter_message() -> dict[str, Any]:
    return {
        "name": "DeadLetter",
        "title": "A message a consumer gave up on",
        "summary": "The original key, value and headers, plus why it failed.",
        "description": "Written by the consumer group that failed, after its attempts ran out or at "
        "once when the value is not an event envelope. The value is copied byte for byte (usually an "
        "envelope of the original topic, possibly not JSON at all). Once the cause is fixed, "
        "re-publish the value to `dlq_original_topic`; consumers deduplicate by `event_id`.",
        "contentType": "application/octet-stream",
        "headers": {
            "type": "object",
            "required": sorted(DLQ_HEADERS),
            "properties": {
                **{h: {"type": "string", "description": "copied from the original"} for h in EVENT_HEADERS},
                **DLQ_HEADERS,
            },
        },
        "payload": {"description": "the original message value, unchanged"},
        "bindings": {"kafka": {"key": {"type": "string"}, "bindingVersion": KAFKA_BINDING}},
    }


def _channel(topic: str, description: str, messages: list[str], retention_ms: int) -> dict[str, Any]:
    return {
        "address": topic,
        "title": topic,
        "description": description,
        "messages": {m: {"$ref": f"#/components/messages/{m}"} for m in messages},
        "bindings": {
            "kafka": {
                "partitions": PARTITIONS,
                "topicConfiguration": {"cleanup.policy": ["delete"], "retention.ms": retention_ms},
                "bindingVersion": KAFKA_BINDING,
            }
        },
    }


def _operation(
    action: str, channel: str, messages: list[str], summary: str, group: str | None
) -> dict[str, Any]:
    op: dict[str, Any] = {
        "action": action,
        "channel": {"$ref": f"#/channels/{channel}"},
        "summary": summary,
        "messages": [{"$ref": f"#/channels/{channel}/messages/{m}"} for m in messages],
    }
    if group is not None:
        op["bindings"] = {
            "kafka": {"groupId": {"type": "string", "enum": [group]}, "bindingVersion": KAFKA_BINDING}
        }
    return op


def asyncapi(service: str) -> dict[str, Any]:
    """One service's document: what it publishes, what it consumes (with its consumer groups) and
    the dead-letter topics its consumers write to."""
    contract = next(s for s in SERVICES if s.name == service)
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    schemas: dict[str, Any] = {}
    samples = examples()

    def event_messages(registry: EventRegistry) -> list[str]:
        ids = []
        for event_type, version, model in versions(registry):
            mid = message_id(event_type, version)
            ids.append(mid)
            payload = _hoist(event_schema(registry, event_type, version), mid, schemas)
            payload["$schema"] = DRAFT_07
            current = version == registry.current_version(event_type)
            messages[mid] = {
                "name": event_type,
                "title": f"{event_type} v{version}" + ("" if current else " (older version, still read)"),
                "summary": summary(model) or None,
                "contentType": "application/json",
                "headers": _headers(event_type, version),
                "payload": {"schemaFormat": ASYNCAPI_SCHEMA_FORMAT, "schema": payload},
                "examples": [
                    {
                        "name": f"{event_type}-v{version}",
                        "headers": kafka_headers(samples[(event_type, version)]),
                        "payload": samples[(event_type, version)],
                    }
                ],
                "bindings": {
                    "kafka": {
                        "key": {"type": "string", "description": "the aggregate id (UTF-8)"},
                        "bindingVersion": KAFKA_BINDING,
                    }
                },
            }
            if messages[mid]["summary"] is None:
                del messages[mid]["summary"]
        return ids

    own = event_messages(contract.registry)
    channels[contract.topic] = _channel(
        contract.topic, f"Events of the {service} service. {DELIVERY}", own, EVENTS_RETENTION_MS
    )
    operations[f"{service}.publish"] = _operation(
        "send", contract.topic, own, f"The {service} outbox relay publishes every stored event.", None
    )
    messages["DeadLetter"] = _dead_letter_message()
    for sub in contract.consumes:
        group = contract.group_id(sub)
        upstream = event_messages(sub.registry)
        channels[sub.topic] = _channel(
            sub.topic, f"Consumed by {service} as group `{group}`. {DELIVERY}", upstream, EVENTS_RETENTION_MS
        )
        operations[f"{group}.consume"] = _operation(
            "receive",
            sub.topic,
            upstream,
            f"Consumer group `{group}`: offsets committed after the reaction's database commit.",
            group,
        )
        dlq = dlq_topic(sub.topic)
        channels[dlq] = _channel(
            dlq,
            f"Messages of {sub.topic} that group `{group}` (and any other consumer of it) gave up on.",
            ["DeadLetter"],
            DLQ_RETENTION_MS,
        )
        operations[f"{group}.deadLetter"] = _operation(
            "send", dlq, ["DeadLetter"], f"Group `{group}` dead-letters a message it cannot process.", None
        )
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": {
            "title": f"{service} service events",
            "version": "1.0.0",
            "description": f"Kafka topics the {service} service publishes and consumes. Generated from "
            "the pydantic models in shared/contracts/ (python -m shared.contracts.docs); the guide is "
            "docs/EVENTS.md.",
        },
        "defaultContentType": "application/json",
        "servers": SERVERS,
        "channels": channels,
        "operations": operations,
        "components": {"messages": messages, "schemas": dict(sorted(schemas.items()))},
    }


def summary(model: type[DomainEvent]) -> str:
    """The first paragraph of a payload model's docstring, on one line."""
    return " ".join((model.__doc__ or "").strip().split("\n\n")[0].split())


def documents() -> dict[Path, str]:
    out: dict[Path, str] = {}
    topics = []
    for service in SERVICES:
        out[OUT / f"{service.name}.asyncapi.json"] = _dump(asyncapi(service.name))
        events = []
        for event_type, version, model in versions(service.registry):
            schema = event_schema(service.registry, event_type, version)
            out[schema_path(event_type, version)] = _dump(schema)
            events.append((event_type, version, schema, summary(model)))
        topics.append((service.topic, service.name, events))
    if GUIDE.exists():
        out[GUIDE] = guide.splice(GUIDE.read_text(), guide.catalogue(topics))
    return out


def _dump(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def refused(docs: dict[Path, str]) -> dict[Path, list[str]]:
    """Published schemas the new text would break (they need a new schema_version instead)."""
    out: dict[Path, list[str]] = {}
    for path, text in docs.items():
        if path.parent.name == "schemas" and path.exists():
            problems = compat.breaking_changes(json.loads(path.read_text()), json.loads(text))
            if problems:
                out[path] = problems
    return out


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
    breaking = refused(docs)
    for path, problems in breaking.items():
        print(f"refused: {path.name} is published; the model changed incompatibly:", file=sys.stderr)
        for problem in problems:
            print(f"  {problem}", file=sys.stderr)
    if breaking:
        print("raise schema_version and register an upcaster (see docs/EVENTS.md)", file=sys.stderr)
        return 1
    for p in stale:
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(docs[p])
    print(f"{len(docs)} documents, {len(stale)} rewritten in {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
