"""A topic published by the relay, then by Debezium, around a cutover: the consumer applies every
event once, in stream order, whichever form (or both) reached it. Real PostgreSQL and Kafka; the
Debezium records are built from the stored rows by the shipped connector configuration
(tests/cdc_form.py), since Debezium itself cannot run here."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared import tracing
from shared.eventstore import EventStore
from shared.kafka import ensure_topics
from shared.migrations import upgrade_to_head
from shared.relay import OutboxRelay
from shared.tables import TRACE_HEADERS_DDL, events
from shared.unit_of_work import UnitOfWork
from tests.cdc_form import debezium_record, stored_row
from tests.integration.core.sample import Counter, registry
from tests.integration.core.test_consumer import applied, consuming, engine  # noqa: F401
from tests.integration.core.test_relay import drained
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration

SERVICES = Path(__file__).resolve().parents[3] / "services"


async def append(db: AsyncEngine, stream: str, values: list[int]) -> None:
    async with UnitOfWork(db, EventStore("upstream", registry)) as uow:
        counter = await uow.load(Counter, stream)
        for n in values:
            counter.count(n)
        await uow.save(counter)
        await uow.commit()


async def test_relay_then_debezium_with_an_overlap_is_applied_once_in_order(
    engine: AsyncEngine,  # noqa: F811
    kafka: str,
    topic: str,
) -> None:
    await ensure_topics(kafka, [topic], partitions=3)
    streams = [str(uuid.uuid4()) for _ in range(3)]
    for s in streams:
        await append(engine, s, [1, 2, 3, 4])

    # Before the cutover: the relay publishes everything so far.
    relay = OutboxRelay(engine, EventStore("upstream", registry), topic, kafka, poll_interval=0.1)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        await eventually(lambda: drained(engine), timeout=60)
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)

    # The slot was created before the relay stopped: Debezium sends the last two events of each
    # stream again (overlap), then the events appended after the relay stopped, only by it.
    for s in streams:
        await append(engine, s, [5, 6])
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(events).order_by(events.c.position))).mappings().all()
    overlap = [r for r in rows if r["version"] >= 3]
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for row in overlap:
            _, key, value, headers = debezium_record(dict(row))
            await producer.send_and_wait(topic, value, key=key, headers=headers)
    finally:
        await producer.stop()

    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        for s in streams:
            await eventually(lambda s=s: _applied_is(engine, s, [1, 2, 3, 4, 5, 6]), timeout=60)
        await asyncio.sleep(1)  # anything left over would show up now
    for s in streams:
        assert await applied(engine, s) == [1, 2, 3, 4, 5, 6]


async def test_debezium_trace_headers_come_from_the_trigger_and_continue_the_trace(
    engine: AsyncEngine,  # noqa: F811
    kafka: str,
    topic: str,
) -> None:
    """The trigger every service's migration installs fills events.traceparent/tracestate from
    trace_context exactly as tests/cdc_form.py models it (so the Debezium form the contract
    tests build is the stored row's), nothing while tracing is off; and a consumer continues the
    trace from the headers Debezium places from those columns."""
    async with engine.begin() as conn:
        for ddl in TRACE_HEADERS_DDL:
            await conn.execute(sa.text(ddl))
    await ensure_topics(kafka, [topic], partitions=1)
    untraced = str(uuid.uuid4())
    await append(engine, untraced, [1])
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        traced = str(uuid.uuid4())
        caller = {
            "traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "tracestate": "a=1",
        }
        with tracing.continued("request", caller):
            await append(engine, traced, [1, 2])
        async with engine.connect() as conn:
            rows = [
                dict(r)
                for r in (await conn.execute(sa.select(events).order_by(events.c.position))).mappings()
            ]
        for row in rows:
            inserted = {k: v for k, v in row.items() if k not in ("traceparent", "tracestate")}
            assert stored_row(inserted) == row
        [plain] = [r for r in rows if r["stream_id"] == untraced]
        assert plain["traceparent"] is None and plain["tracestate"] is None
        sent = [r for r in rows if r["stream_id"] == traced]
        assert all(r["tracestate"] == "a=1" for r in sent)
        producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            for row in sent:
                _, key, value, headers = debezium_record(row)
                await producer.send_and_wait(topic, value, key=key, headers=headers)
        finally:
            await producer.stop()
        async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
            await eventually(lambda: _applied_is(engine, traced, [1, 2]), timeout=60)
    finally:
        tracing.install(None)
        provider.shutdown()
    [request] = [s for s in exporter.get_finished_spans() if s.name == "request"]
    processed = [s for s in exporter.get_finished_spans() if s.name == "Counted process"]
    assert len(processed) == 2
    for span in processed:
        assert span.parent is not None and span.parent.span_id == request.context.span_id
        assert span.context.trace_id == int("4bf92f3577b34da6a3ce929d0e0e4736", 16)
        assert span.context.trace_state.get("a") == "1"


@pytest.mark.parametrize("service", ["membership", "claims", "activities", "counseling", "mediation"])
async def test_every_service_migrates_to_the_trace_header_trigger(database_url: str, service: str) -> None:
    """Each service's head has the columns and the trigger the connectors rely on."""
    migrations = SERVICES / service / "migrations"
    await upgrade_to_head(migrations, database_url)
    db = create_async_engine(database_url)
    try:
        async with db.begin() as conn:
            await conn.execute(
                sa.text(
                    "INSERT INTO events (event_id, stream_type, stream_id, version, event_type,"
                    " schema_version, occurred_at, correlation_id, data, trace_context)"
                    " VALUES (:id, 'Counter', 's', 1, 'Counted', 1, now(), :cid, '{}',"
                    " CAST(:trace AS jsonb))"
                ),
                {
                    "id": uuid.uuid4(),
                    "cid": uuid.uuid4(),
                    "trace": json.dumps(
                        {"traceparent": "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"}
                    ),
                },
            )
            row = (await conn.execute(sa.text("SELECT traceparent, tracestate FROM events"))).one()
        assert tuple(row) == ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", None)
    finally:
        await db.dispose()


async def _applied_is(db: AsyncEngine, stream: str, expected: list[int]) -> bool:
    with contextlib.suppress(Exception):
        return await applied(db, stream) == expected
    return False
