"""Every event a service emits during the test suite must validate against its published schema.

``EventStore.append`` is wrapped for the whole session (tests/conftest.py): each envelope a
service appends in-process — through commands, reactions, rebuilds — is recorded, and at the end
of the session each is validated against ``docs/contracts/schemas/<Type>.v<N>.json``. A violation
fails the run. Service *processes* (tests/e2e) are covered by reading their topics: the
subscriber test records everything on both topics of its run here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jsonschema

from shared.contracts import docs
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore

PRODUCERS = {s.name for s in docs.SERVICES}


class EmittedEvents:
    def __init__(self, schemas: Path = docs.OUT / "schemas") -> None:
        self.schemas = schemas
        self.seen: dict[tuple[str, int], int] = {}
        self.violations: list[str] = []
        self._validators: dict[tuple[str, int], jsonschema.Draft202012Validator | None] = {}

    def _validator(self, event_type: str, version: int) -> jsonschema.Draft202012Validator | None:
        key = (event_type, version)
        if key not in self._validators:
            path = self.schemas / f"{event_type}.v{version}.json"
            self._validators[key] = (
                jsonschema.Draft202012Validator(
                    json.loads(path.read_text()), format_checker=jsonschema.FormatChecker()
                )
                if path.exists()
                else None
            )
        return self._validators[key]

    def record(self, envelopes: Sequence[EventEnvelope]) -> None:
        for envelope in envelopes:
            self.record_json(json.loads(envelope.to_bytes()))

    def record_json(self, instance: dict[str, Any]) -> None:
        """One envelope as it is (or would be) on the wire, e.g. read from a topic."""
        producer = instance.get("producer")
        if producer not in PRODUCERS:
            return  # the core tests' sample events: no published contract
        key = (str(instance.get("event_type")), int(instance.get("schema_version", 0)))
        self.seen[key] = self.seen.get(key, 0) + 1
        validator = self._validator(*key)
        if validator is None:
            self.violations.append(f"{producer} emitted {key[0]} v{key[1]}, which has no published schema")
            return
        for error in validator.iter_errors(instance):
            path = "/".join(map(str, error.absolute_path)) or "(envelope)"
            self.violations.append(f"{key[0]} v{key[1]} {instance.get('event_id')}: {path}: {error.message}")

    def never_seen(self) -> list[str]:
        """Current event types of the contract that no test made a service emit."""
        current = {(t.event_type, t.schema_version) for s in docs.SERVICES for t in s.registry.types()}
        return sorted(f"{t} v{v}" for t, v in current - set(self.seen))

    def install(self) -> None:
        """Wrap EventStore.append so every stored envelope is recorded (after it was stored)."""
        original = EventStore.append

        @functools.wraps(original)
        async def append(store: EventStore, conn: Any, batch: Sequence[EventEnvelope]) -> list[int]:
            positions = await original(store, conn, batch)
            self.record(batch)
            return positions

        EventStore.append = append  # type: ignore[method-assign]
        self._original = original

    def uninstall(self) -> None:
        EventStore.append = self._original  # type: ignore[method-assign]
