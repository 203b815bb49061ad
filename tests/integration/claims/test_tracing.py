"""Claims continues the trace of the injury report it decides, on the real broker, whether it
decides at once or only once the member's facts have caught up (the report waits in
``pending_reports`` meanwhile, with its trace context)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import date

import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from shared import tracing
from shared.envelope import EventEnvelope
from tests.integration.claims.conftest import STAFF, ClaimsUnderTest
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration

AUG_2 = date(2016, 8, 2)


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


async def _send_traced(c: ClaimsUnderTest, env: EventEnvelope, traceparent: str) -> None:
    await c.feed.producer.send_and_wait(
        c.feed.topic,
        env.to_bytes(),
        key=env.kafka_key(),
        headers=[*env.kafka_headers(), ("traceparent", traceparent.encode())],
    )


async def _applied(c: ClaimsUnderTest, stream: uuid.UUID, version: int) -> bool:
    """Claims' consumer has applied ``stream`` up to ``version``."""
    async with c.runtime.engine.connect() as conn:
        seen = await conn.scalar(
            sa.text("SELECT max(version) FROM consumer_streams WHERE stream_id = :s"), {"s": str(stream)}
        )
    return seen is not None and int(seen) >= version


async def _waiting(c: ClaimsUnderTest, report_id: str) -> bool:
    r = await c.http.get(f"/v1/reports/{report_id}", headers=STAFF)
    return r.status_code == 200 and r.json()["state"] == "pending_coverage"


@pytest.mark.parametrize("facts_first", [True, False], ids=["decided-at-once", "decided-after-waiting"])
async def test_the_claims_of_a_report_carry_its_trace(
    spans: InMemorySpanExporter, claims: ClaimsUnderTest, facts_first: bool
) -> None:
    f, member = claims.feed, uuid.uuid4()
    facts = [f.joined(member), f.card(member)]  # traced by nobody: traces of their own
    report = f.injury(member, AUG_2)
    trace_id = uuid.uuid4().hex
    traceparent = f"00-{trace_id}-{uuid.uuid4().hex[:16]}-01"
    if facts_first:
        await f.send(*facts)
        await eventually(lambda: _applied(claims, member, len(facts)))  # other partitions
        await _send_traced(claims, report, traceparent)
    else:
        await _send_traced(claims, report, traceparent)  # claims knows nothing of the member yet
        await eventually(lambda: _waiting(claims, report.aggregate_id))
        await f.send(*facts)

    [filed] = await read_topic(claims.settings.kafka_bootstrap_servers, claims.claims_topic, expect=1)
    assert filed.headers["event_type"] == b"ClaimFiled"
    assert json.loads(filed.value)["causation_id"] == str(report.event_id)
    assert tracing.trace_id_of(filed.headers["traceparent"]) == trace_id

    # The span that appended the ClaimFiled: the report's reaction, or the decision that
    # continued it after waiting (its child).
    ours = {f"{s.context.span_id:016x}": s for s in spans.get_finished_spans()}
    appender = ours[filed.headers["traceparent"].decode().split("-")[2]]
    reaction = next(s for s in ours.values() if s.name == "InjuryReported process")
    assert f"{reaction.context.trace_id:032x}" == trace_id
    if facts_first:
        assert appender is reaction
    else:
        assert appender.name == "InjuryReported decide"
        assert appender.parent is not None and appender.parent.span_id == reaction.context.span_id
