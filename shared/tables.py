"""Tables of the event-sourcing core. Every service has its own copy in its own database."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

core_metadata = sa.MetaData()

#: Every event ever recorded. ``position`` is the global order; (stream_id, version) and
#: event_id are unique, which is what optimistic concurrency and idempotent appends rest on.
events = sa.Table(
    "events",
    core_metadata,
    sa.Column("position", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("event_id", UUID(as_uuid=True), nullable=False, unique=True),
    sa.Column("stream_type", sa.Text, nullable=False),
    sa.Column("stream_id", sa.Text, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("schema_version", sa.Integer, nullable=False),
    sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("correlation_id", UUID(as_uuid=True), nullable=False),
    sa.Column("causation_id", UUID(as_uuid=True), nullable=True),
    sa.Column("data", JSONB, nullable=False),
    #: The W3C trace context current when the event was appended (``{"traceparent": ...}``), for
    #: the relay's ``traceparent`` header; NULL while tracing is off (shared/tracing.py).
    sa.Column("trace_context", JSONB, nullable=True),
    #: ``trace_context``'s two values as plain text, for change data capture only: Debezium's
    #: outbox router can place a *column* in a header but cannot reach into jsonb, and pgoutput
    #: does not publish generated columns before PostgreSQL 18, so a trigger fills them
    #: (``TRACE_HEADERS_DDL``) and the connectors place them as the ``traceparent``/``tracestate``
    #: headers the relay sends (deploy/k8s/cdc/connectors.yaml).
    sa.Column("traceparent", sa.Text, nullable=True),
    sa.Column("tracestate", sa.Text, nullable=True),
    sa.UniqueConstraint("stream_id", "version", name="events_stream_version_key"),
)

#: Events not yet confirmed on Kafka. A row is deleted only after the broker acknowledged it.
outbox = sa.Table(
    "outbox",
    core_metadata,
    sa.Column(
        "position",
        sa.BigInteger,
        sa.ForeignKey("events.position", ondelete="CASCADE"),
        primary_key=True,
    ),
)

#: Aggregates whose publishing is held back: Kafka refused one of their events for good (too
#: large, invalid). The relay skips every outbox row of a held stream, so that stream's order is
#: kept and every other stream flows on; an operator releases or drops it (``ops held``).
outbox_held = sa.Table(
    "outbox_held",
    core_metadata,
    sa.Column("stream_id", sa.Text, primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),  # the refused event
    sa.Column("event_type", sa.Text, nullable=False),
    sa.Column("value_bytes", sa.Integer, nullable=False),
    sa.Column("error", sa.Text, nullable=False),  # the exception type only, never a message
    sa.Column("held_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

#: Events a consumer has already handled (or dead-lettered): the deduplication record.
inbox = sa.Table(
    "inbox",
    core_metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("event_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("outcome", sa.Text, nullable=False),
    sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

snapshots = sa.Table(
    "snapshots",
    core_metadata,
    sa.Column("stream_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("state", JSONB, nullable=False),
    sa.Column("taken_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

#: First answers to creating POSTs, by Idempotency-Key, stored in the command's own transaction.
idempotency_keys = sa.Table(
    "idempotency_keys",
    core_metadata,
    sa.Column("scope", sa.Text, primary_key=True),
    sa.Column("key", sa.Text, primary_key=True),
    sa.Column("request_hash", sa.Text, nullable=False),
    sa.Column("status_code", sa.Integer, nullable=False),
    sa.Column("body", JSONB, nullable=False),
    sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)

OUTBOX_CHANNEL = "outbox_ready"

#: Wakes the relay when an append commits (NOTIFY is delivered at commit, once per statement).
OUTBOX_NOTIFY_DDL = (
    f"""
    CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN PERFORM pg_notify('{OUTBOX_CHANNEL}', ''); RETURN NULL; END $$
    """,
    """
    CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify()
    """,
)

#: Fills ``events.traceparent``/``tracestate`` from ``trace_context`` on insert, whoever inserts
#: (no application code writes them, so the two cannot disagree); only for rows that carry a
#: context, so appends while tracing is off pay nothing.
TRACE_HEADERS_DDL = (
    """
    CREATE OR REPLACE FUNCTION events_trace_headers() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        NEW.traceparent := NULLIF(NEW.trace_context->>'traceparent', '');
        NEW.tracestate := NULLIF(NEW.trace_context->>'tracestate', '');
        RETURN NEW;
    END $$
    """,
    "DROP TRIGGER IF EXISTS events_trace_headers ON events",
    """
    CREATE TRIGGER events_trace_headers BEFORE INSERT ON events
    FOR EACH ROW WHEN (NEW.trace_context IS NOT NULL) EXECUTE FUNCTION events_trace_headers()
    """,
)

#: What each consumer has applied of every upstream stream, and what waits for a gap to fill.
#: Kept apart from ``core_metadata`` because a service's first migration creates that one from
#: live code; these tables are written out by each service's second migration.
consumer_metadata = sa.MetaData()

#: The last version of each upstream stream a consumer applied: the next one must be exactly one
#: higher, so a reordered or missing event is noticed instead of applied out of order.
consumer_streams = sa.Table(
    "consumer_streams",
    consumer_metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("stream_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

#: Events that arrived ahead of an earlier version of their stream. They are applied, in order,
#: in the transaction that applies the missing version (or replays it from the dead-letter topic).
consumer_parked = sa.Table(
    "consumer_parked",
    consumer_metadata,
    sa.Column("consumer", sa.Text, primary_key=True),
    sa.Column("stream_id", sa.Text, primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True),
    sa.Column("envelope", JSONB, nullable=False),
    sa.Column("parked_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
)
