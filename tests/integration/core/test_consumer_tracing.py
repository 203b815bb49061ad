"""The trace context on the consumer side, on the real database: a reaction runs in a span that
continues its event's ``traceparent``; what it appends is stored with that span's context (NULL
while tracing is off); an event parked until its predecessor arrives keeps its own context."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import tracing
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer, Outcome
from shared.tables import events
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import Counted, Counter, registry

pytestmark = pytest.mark.integration


def _traceparent() -> tuple[str, str]:
    trace_id = uuid.uuid4().hex
    return trace_id, f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"


def _envelope(stream: str, version: int, n: int) -> EventEnvelope:
    es = EventStore("upstream", registry)
    [env] = es.envelopes("Counter", stream, version - 1, [Counted(n=n)], correlation_id=uuid.uuid4())
    return env


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


def _consumer(engine: AsyncEngine, seen: dict[int, str | None]) -> InboxConsumer:
    store = EventStore("downstream", registry)

    async def react(uow: UnitOfWork, envelope: EventEnvelope) -> None:
        n = int(envelope.data["n"])
        seen[n] = tracing.current_trace_context()
        counter = Counter(f"echo-{envelope.aggregate_id}-{n}")
        counter.count(n)
        await uow.save(counter)

    return InboxConsumer("echo", engine, store, {"Counted": react})


async def _stored_contexts(engine: AsyncEngine) -> dict[str, object]:
    async with engine.connect() as conn:
        rows = (await conn.execute(sa.select(events.c.stream_id, events.c.trace_context))).all()
    return {stream: context for stream, context in rows}


async def test_what_a_reaction_appends_carries_its_events_trace(
    spans: InMemorySpanExporter, core_engine: AsyncEngine
) -> None:
    seen: dict[int, str | None] = {}
    consumer = _consumer(core_engine, seen)
    stream = str(uuid.uuid4())
    v1, v2, v3 = (_envelope(stream, v, v) for v in (1, 2, 3))
    (t1, p1), (t2, p2), (t3, p3) = _traceparent(), _traceparent(), _traceparent()
    traces = {v1.event_id: {"traceparent": p1}, v2.event_id: {"traceparent": p2}}

    # v3 first: parked (v1 and v2 not applied yet), with its own trace kept in the park.
    parked = await consumer.apply([v3], traces={v3.event_id: {"traceparent": p3}})
    assert parked.outcomes == [Outcome.PARKED] and seen == {}
    # v1 and v2 (another batch, another delivery): v3 is released after v2, in its own trace.
    done = await consumer.apply([v1, v2], traces=traces)
    assert done.outcomes == [Outcome.PROCESSED, Outcome.PROCESSED]
    assert {n: tracing.trace_id_of(json.loads(c or "{}")["traceparent"]) for n, c in seen.items()} == {
        1: t1,
        2: t2,
        3: t3,
    }
    stored = await _stored_contexts(core_engine)
    for n, trace_id in ((1, t1), (2, t2), (3, t3)):
        context = stored[f"echo-{stream}-{n}"]
        assert isinstance(context, dict)
        assert tracing.trace_id_of(context["traceparent"]) == trace_id
    consumer_spans = [s for s in spans.get_finished_spans() if s.name == "Counted process"]
    assert sorted(f"{s.context.trace_id:032x}" for s in consumer_spans) == sorted([t1, t2, t3])


async def test_off_a_reaction_stores_no_trace_context(core_engine: AsyncEngine) -> None:
    assert not tracing.enabled()
    seen: dict[int, str | None] = {}
    consumer = _consumer(core_engine, seen)
    stream = str(uuid.uuid4())
    v1 = _envelope(stream, 1, 1)
    _, p1 = _traceparent()
    await consumer.apply([v1], traces={v1.event_id: {"traceparent": p1}})
    assert seen == {1: None}
    assert await _stored_contexts(core_engine) == {f"echo-{stream}-1": None}
