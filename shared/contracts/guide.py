"""The generated part of docs/EVENTS.md: every event, its fields and a real example.

The prose around it is written by hand; the text between the markers is rewritten by
``python -m shared.contracts.docs`` and checked by the drift test like every contract document.
"""

from __future__ import annotations

import json
from typing import Any

from shared.contracts.examples import examples, kafka_headers

BEGIN = "<!-- BEGIN GENERATED CATALOGUE (python -m shared.contracts.docs) -->"
END = "<!-- END GENERATED CATALOGUE -->"


def _resolve(schema: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        return {**defs[ref.removeprefix("#/$defs/")], **{k: v for k, v in schema.items() if k != "$ref"}}
    return schema


def type_of(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    """A short reading of a field's JSON Schema: ``uuid``, ``date``, ``"a" | "b"``, ``uuid | null``."""
    schema = _resolve(schema, defs)
    if "anyOf" in schema:
        parts = [type_of(s, defs) for s in schema["anyOf"]]
        nullable = "null" in parts
        rest = [p for p in parts if p != "null"]
        if rest in (["number", "decimal string"], ["number", "string"]):  # how pydantic writes Decimal
            parts = ['decimal, sent as a string (`"3200.00"`; the schema also admits a number)']
            parts += ["null"] if nullable else []
        return " \\| ".join(parts)
    if "enum" in schema:
        return " \\| ".join(f"`{v}`" for v in schema["enum"])
    if "const" in schema:
        return f"`{schema['const']}`"
    t = schema.get("type", "any")
    if t == "array":
        return f"list of {type_of(schema.get('items', {}), defs)}"
    if t == "string" and "format" in schema:
        return str(schema["format"])
    if t == "string" and "pattern" in schema:
        return "decimal string" if "\\d" in schema["pattern"] else f"string `{schema['pattern']}`"
    return str(t)


def fields_table(event_schema: dict[str, Any]) -> list[str]:
    defs = event_schema.get("$defs", {})
    data = event_schema["properties"]["data"]
    required = set(data.get("required", []))
    rows = ["| field | type | required |", "|---|---|---|"]
    for name, prop in data["properties"].items():
        rows.append(
            f"| `{name}` | {type_of(prop, defs)} | {'yes' if name in required else 'no (has a default)'} |"
        )
    return rows


def catalogue(topics: list[tuple[str, str, list[tuple[str, int, dict[str, Any], str]]]]) -> str:
    """``topics``: (topic, service, [(event type, version, its envelope schema, summary)])."""
    samples = examples()
    out = [BEGIN, ""]
    for topic, service, events in topics:
        out += [f"### `{topic}` (published by {service})", ""]
        for event_type, version, schema, summary in events:
            sample = samples[(event_type, version)]
            out += [f"#### {event_type} v{version}", ""]
            if summary:
                out += [summary, ""]
            out += [
                f"Key: `{sample['aggregate_type']}` id. Schema: "
                f"[`schemas/{event_type}.v{version}.json`](contracts/schemas/{event_type}.v{version}.json).",
                "",
                *fields_table(schema),
                "",
                "Headers: `" + json.dumps(kafka_headers(sample), ensure_ascii=False) + "`",
                "",
                "```json",
                json.dumps(sample, indent=2, ensure_ascii=False),
                "```",
                "",
            ]
    out.append(END)
    return "\n".join(out)


def splice(text: str, generated: str) -> str:
    """Put ``generated`` between the markers of ``text`` (which must have them)."""
    head, sep, rest = text.partition(BEGIN)
    _, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise ValueError(f"docs/EVENTS.md lacks the markers {BEGIN!r} ... {END!r}")
    return head + generated + tail
