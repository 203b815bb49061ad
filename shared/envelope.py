"""The event envelope: the one wire format every service publishes and consumes (docs/DESIGN.md §3)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_serializer

HEADER_NAMES = ("event_type", "event_id", "schema_version", "correlation_id")


class EventEnvelope(BaseModel):
    """A stored or published event. Unknown fields from newer producers are ignored, not rejected."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: uuid.UUID
    event_type: str
    schema_version: int = Field(ge=1)
    aggregate_type: str
    aggregate_id: str
    aggregate_version: int = Field(ge=1)
    occurred_at: datetime
    producer: str
    correlation_id: uuid.UUID
    causation_id: uuid.UUID | None = None
    data: dict[str, Any]

    @field_serializer("occurred_at")
    def _rfc3339_utc(self, value: datetime) -> str:
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode()

    @classmethod
    def from_bytes(cls, raw: bytes) -> EventEnvelope:
        return cls.model_validate_json(raw)

    def kafka_key(self) -> bytes:
        return self.aggregate_id.encode()

    def kafka_headers(self) -> list[tuple[str, bytes]]:
        return [
            ("event_type", self.event_type.encode()),
            ("event_id", str(self.event_id).encode()),
            ("schema_version", str(self.schema_version).encode()),
            ("correlation_id", str(self.correlation_id).encode()),
        ]


def utcnow() -> datetime:
    return datetime.now(UTC)
