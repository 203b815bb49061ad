"""One trace from the injury report's HTTP request to the ``ClaimFiled`` it caused (issue 11, 8).

Membership and claims run in-process, each on its own fresh database, on the real broker: the
report goes over HTTP to membership with a known ``traceparent``; its ``InjuryReported`` goes
through membership's outbox and relay to Kafka; claims' consumer reacts and files the claim; its
``ClaimFiled`` goes through claims' outbox and relay. The ``traceparent`` header of that message
must carry the request's trace id, and the spans (kept in memory) must chain: the caller's span ->
membership's server span -> claims' consumer span, which appended the ``ClaimFiled``.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import date

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from services.membership.app import create_app
from services.membership.settings import MembershipSettings
from shared import tracing
from shared.kafka import ensure_topics
from shared.tables import events
from tests.infra import Infra
from tests.integration.claims.conftest import claims_settings, running_claims
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import create, new_member, union_tree
from tests.kafka_support import read_topic

pytestmark = pytest.mark.integration

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TODAY = date(2016, 8, 10)


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


@pytest.fixture
async def claims_database_url(infra: Infra) -> AsyncIterator[str]:
    """A second fresh database (``database_url`` is membership's)."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = infra.admin_url.rpartition("/")[0]
    yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


async def test_one_trace_from_the_injury_report_to_the_claim_filed(
    spans: InMemorySpanExporter, database_url: str, claims_database_url: str, kafka: str
) -> None:
    run = uuid.uuid4().hex[:12]
    membership_topic, claims_topic = f"test.{run}.membership.events", f"test.{run}.claims.events"
    await ensure_topics(kafka, [membership_topic, claims_topic])
    settings = MembershipSettings(
        MEMBERSHIP_DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=kafka,
        MEMBERSHIP_TOPIC=membership_topic,
        MEMBERSHIP_CLAIMS_TOPIC=claims_topic,
        MEMBERSHIP_ACTIVITIES_TOPIC=f"test.{run}.activities.events",
        consumer_group_prefix=f"test.{run}.",
        relay_poll_interval=0.2,
    )
    app = create_app(settings, clock=lambda: TODAY)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://membership") as client,
        running_claims(claims_settings(claims_database_url, kafka, membership_topic, claims_topic)) as (
            claims_runtime,
            _,
            _,
        ),
    ):
        membership = Service(app, client, settings, kafka, [])
        tree = await union_tree(membership)
        member = await new_member(membership, tree["grassroots"], card=True)  # card since 2010
        report = await create(
            membership,
            f"/v1/members/{member['member_id']}/injury-reports",
            {"occurred_on": "2016-08-01", "work_related": False, "description": "手伤", "diagnosis": "裂伤"},
            traceparent=f"00-{TRACE_ID}-{CALLER_SPAN}-01",
        )

        # The card claim, filed by claims' reaction and published by its relay.
        [filed] = [
            r
            for r in await read_topic(kafka, claims_topic, expect=1, timeout=60)
            if r.headers["event_type"] == b"ClaimFiled"
        ]
        assert json.loads(filed.value)["data"]["report_id"] == report["report_id"]
        assert "traceparent" in filed.headers, "the ClaimFiled message carries no trace context"
        assert tracing.trace_id_of(filed.headers["traceparent"]) == TRACE_ID

        # The report's own message on membership's topic carries the request's trace too.
        reported = [
            r
            for r in await read_topic(kafka, membership_topic, expect=1)
            if r.headers["event_type"] == b"InjuryReported"
        ]
        assert [tracing.trace_id_of(r.headers["traceparent"]) for r in reported] == [TRACE_ID]

        # And the outbox kept it with the stored event.
        async with claims_runtime.engine.connect() as conn:
            stored = (
                await conn.execute(
                    sa.select(events.c.trace_context).where(events.c.event_type == "ClaimFiled")
                )
            ).scalar_one()
        assert stored["traceparent"] == filed.headers["traceparent"].decode()

    finished = [s for s in spans.get_finished_spans() if f"{s.context.trace_id:032x}" == TRACE_ID]
    by_name = {s.name: s for s in finished}
    server = by_name["POST /v1/members/{member_id}/injury-reports"]
    consumer = by_name["InjuryReported process"]
    assert server.kind is SpanKind.SERVER and consumer.kind is SpanKind.CONSUMER
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLER_SPAN
    # The relay forwards the appending span's context: the consumer is the server span's child,
    # and the ClaimFiled was appended inside the consumer span, or (if claims had the report
    # before the card, which went through another partition) in the decision that continued it.
    assert consumer.parent is not None and consumer.parent.span_id == server.context.span_id
    appender = filed.headers["traceparent"].decode().split("-")[2]
    decided = [s for s in finished if s.name == "InjuryReported decide"]
    if appender == f"{consumer.context.span_id:016x}":
        assert decided == []
    else:
        [decision] = decided
        assert appender == f"{decision.context.span_id:016x}"
        assert decision.parent is not None and decision.parent.span_id == consumer.context.span_id
    # The requests without a traceparent (the union tree, the member, the card) are traces of
    # their own, not part of this one.
    assert {s.kind for s in finished} <= {SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.INTERNAL}
