"""Event store on PostgreSQL: append with an expected version, read a stream, read everything.

Appending writes the events and their outbox rows in one statement, inside the caller's
transaction, so the caller's read-model updates and inbox record commit atomically with them.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from shared import driver
from shared.envelope import EventEnvelope, utcnow
from shared.events import DomainEvent, EventRegistry
from shared.tables import events
from shared.tracing import current_trace_context

#: One statement for every batch size, prepared once per connection by asyncpg, sent past
#: SQLAlchemy (shared/driver.py: a tenth of a millisecond of CPU less per append). The CTE writes
#: the events and queues them for the relay in one round trip.
_APPEND = """
    WITH inserted AS (
        INSERT INTO events (event_id, stream_type, stream_id, version, event_type, schema_version,
                            occurred_at, correlation_id, causation_id, data, trace_context)
        SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int[], $5::text[], $6::int[],
                             $7::timestamptz[], $8::uuid[], $9::uuid[], $10::jsonb[], $11::jsonb[])
        RETURNING position
    )
    INSERT INTO outbox (position) SELECT position FROM inserted RETURNING position
"""

_READ_STREAM = """
    SELECT position, event_id, stream_type, stream_id, version, event_type, schema_version,
           occurred_at, correlation_id, causation_id, data
    FROM events WHERE stream_id = $1 AND version > $2 ORDER BY version
"""


class ConcurrencyError(Exception):
    """The stream moved on since it was read: another writer appended the same version first."""

    def __init__(self, stream_id: str, expected_version: int) -> None:
        super().__init__(f"stream {stream_id} is no longer at version {expected_version}")
        self.stream_id = stream_id
        self.expected_version = expected_version


#: Default ceiling for one event's ``data`` as JSON. Kafka's default max.message.bytes is about
#: 1 MB; the envelope and headers add well under 1 KB, so 256 KiB leaves a wide margin.
DEFAULT_MAX_EVENT_BYTES = 256 * 1024


class EventTooLarge(Exception):
    """An event's data is over the configured size: refused at append, before it is stored,
    because the broker would refuse it for ever and the relay could never publish it."""

    def __init__(self, event_type: str, field: str, size: int, limit: int) -> None:
        super().__init__(f"{event_type} data is {size} bytes (max {limit}), mostly {field!r}")
        self.event_type, self.field, self.size, self.limit = event_type, field, size, limit


def _largest_field(data: dict[str, Any]) -> str:
    """The top-level field that takes the most room (usually the request field to blame)."""
    if not data:
        return "data"
    return max(data, key=lambda k: len(json.dumps(data[k], separators=(",", ":"), default=str)))


class DuplicateEventError(Exception):
    """An event with this event_id is already stored."""


@dataclass(frozen=True)
class StoredEvent:
    position: int
    envelope: EventEnvelope


class EventStore:
    """Stateless: every call takes the connection (and so the transaction) it must work in."""

    def __init__(
        self, producer: str, registry: EventRegistry, *, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    ) -> None:
        self.producer = producer
        self.registry = registry
        self.max_event_bytes = max_event_bytes

    def envelopes(
        self,
        stream_type: str,
        stream_id: str,
        expected_version: int,
        new_events: Sequence[DomainEvent],
        *,
        correlation_id: uuid.UUID,
        causation_id: uuid.UUID | None = None,
        event_ids: Sequence[uuid.UUID] | None = None,
    ) -> list[EventEnvelope]:
        now = utcnow()
        return [
            EventEnvelope(
                event_id=event_ids[i] if event_ids else uuid.uuid4(),
                event_type=e.event_type,
                schema_version=e.schema_version,
                aggregate_type=stream_type,
                aggregate_id=stream_id,
                aggregate_version=expected_version + i + 1,
                occurred_at=now,
                producer=self.producer,
                correlation_id=correlation_id,
                causation_id=causation_id,
                data=e.model_dump(mode="json"),
            )
            for i, e in enumerate(new_events)
        ]

    async def append(self, conn: AsyncConnection, batch: Sequence[EventEnvelope]) -> list[int]:
        """Store envelopes (consecutive versions per stream; one or more streams), queued for the relay.

        A conflict aborts the caller's transaction (no savepoint: it would cost two round trips
        on every append); the unit of work retries the whole command from a fresh read.
        """
        if not batch:
            return []
        data = [json.dumps(e.data, separators=(",", ":")) for e in batch]
        for envelope, text in zip(batch, data, strict=True):
            # ASCII-escaped JSON: at least as long as the UTF-8 the relay sends, so a safe measure.
            if len(text) > self.max_event_bytes:
                raise EventTooLarge(
                    envelope.event_type, _largest_field(envelope.data), len(text), self.max_event_bytes
                )
        # The span this append runs in (a request's, or a reaction's): the relay sends it on as
        # the ``traceparent`` header. None (NULL) while tracing is off.
        trace = current_trace_context()
        try:
            rows = await driver.fetch(
                conn,
                _APPEND,
                [e.event_id for e in batch],
                [e.aggregate_type for e in batch],
                [e.aggregate_id for e in batch],
                [e.aggregate_version for e in batch],
                [e.event_type for e in batch],
                [e.schema_version for e in batch],
                [e.occurred_at for e in batch],
                [e.correlation_id for e in batch],
                [e.causation_id for e in batch],
                data,
                [trace] * len(batch),
            )
        except IntegrityError as exc:
            text = str(exc.orig)
            if "events_event_id_key" in text:
                raise DuplicateEventError(text) from exc
            if "events_stream_version_key" in text:
                first = batch[0]
                raise ConcurrencyError(first.aggregate_id, first.aggregate_version - 1) from exc
            raise
        return sorted(r[0] for r in rows)

    async def read_stream(
        self, conn: AsyncConnection, stream_id: str, after_version: int = 0
    ) -> list[EventEnvelope]:
        rows = await driver.fetch(conn, _READ_STREAM, stream_id, after_version)
        return [self._envelope(row) for row in rows]

    async def read_all(
        self, conn: AsyncConnection, after_position: int = 0, limit: int = 1000
    ) -> list[StoredEvent]:
        """Events in position order. Within a stream, position order is commit order.

        Across streams a concurrent writer may commit a lower position later, so this is the
        tool for rebuilding from one snapshot (one transaction), not for tailing: tailing is
        what the outbox relay and Kafka are for.
        """
        result = await conn.execute(
            sa.select(events)
            .where(events.c.position > after_position)
            .order_by(events.c.position)
            .limit(limit)
        )
        return [StoredEvent(row["position"], self._envelope(row)) for row in result.mappings()]

    def as_published(self, row: sa.RowMapping) -> EventEnvelope:
        """The envelope exactly as stored, not upcast: what the relay puts on Kafka (it renders the
        same fields in SQL; tests and the benchmark compare against this)."""
        return self._envelope(row, upcast=False)

    def decode(self, envelope: EventEnvelope) -> DomainEvent:
        return self.registry.decode(envelope.event_type, envelope.schema_version, envelope.data)

    def _envelope(self, row: Any, *, upcast: bool = True) -> EventEnvelope:
        """Rows come back lifted to the current schema version of their type (if known)."""
        event_type, version, data = row["event_type"], row["schema_version"], dict(row["data"])
        if upcast and event_type in self.registry:
            current = self.registry.current_version(event_type)
            if version < current:
                data = self.registry.upcast(event_type, version, data)
                version = current
        # Rows come from our own table, already typed by the driver: no need to validate again.
        return EventEnvelope.model_construct(
            event_id=row["event_id"],
            event_type=event_type,
            schema_version=version,
            aggregate_type=row["stream_type"],
            aggregate_id=row["stream_id"],
            aggregate_version=row["version"],
            occurred_at=row["occurred_at"],
            producer=self.producer,
            correlation_id=row["correlation_id"],
            causation_id=row["causation_id"],
            data=data,
        )
