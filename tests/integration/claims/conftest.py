"""The claims service in-process on a fresh database, fed membership events over the real broker."""

from __future__ import annotations

import contextlib
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.claims.api import router
from services.claims.app import ClaimsSettings, build_runtime
from shared.clock import fixed
from shared.contracts import membership as m
from shared.contracts.common import Gender
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.eventstore import EventStore
from shared.kafka import ensure_topics
from shared.runtime import ServiceRuntime

STAFF = {"Authorization": "Bearer local-staff-token"}
#: The business date of every claims test (the service is given ``fixed(TODAY)``, not the real date).
TODAY = date(2016, 8, 10)


class MembershipFeed:
    """Publishes membership events the way the membership relay does: envelope, key, headers,
    consecutive versions per aggregate. Lets a test choose the order the claims service sees."""

    def __init__(self, kafka: str, topic: str) -> None:
        self.topic = topic
        self.store = EventStore("membership", m.registry)
        self.versions: dict[str, int] = defaultdict(int)
        self.producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)

    def envelope(self, stream_type: str, stream_id: uuid.UUID, event: DomainEvent) -> EventEnvelope:
        sid = str(stream_id)
        [env] = self.store.envelopes(
            stream_type, sid, self.versions[sid], [event], correlation_id=uuid.uuid4()
        )
        self.versions[sid] += 1
        return env

    async def send(self, *envelopes: EventEnvelope) -> None:
        for env in envelopes:
            await self.producer.send_and_wait(
                self.topic, env.to_bytes(), key=env.kafka_key(), headers=env.kafka_headers()
            )

    # the member's story, as events ------------------------------------------------------------

    def joined(self, member: uuid.UUID, joined_on: date = date(2012, 5, 1)) -> EventEnvelope:
        return self.envelope(
            "Member",
            member,
            m.MemberJoined(
                member_id=member,
                union_id=uuid.uuid4(),
                full_name="Test Member",
                gender=Gender.MALE,
                birth_date=date(1980, 3, 4),
                joined_on=joined_on,
            ),
        )

    def card(self, member: uuid.UUID, issued_on: date = date(2015, 3, 1)) -> EventEnvelope:
        return self.envelope(
            "Member", member, m.CardIssued(member_id=member, card_last4="4321", issued_on=issued_on)
        )

    def enrolled(
        self, member: uuid.UUID, starts: date, ends: date, plan: str = "accident_injury"
    ) -> EventEnvelope:
        return self.envelope(
            "Member",
            member,
            m.PlanEnrolled(
                enrollment_id=uuid.uuid4(),
                member_id=member,
                plan_code=plan,
                shares=1,
                coverage_starts_on=starts,
                coverage_ends_on=ends,
            ),
        )

    def injury(
        self,
        member: uuid.UUID,
        occurred_on: date,
        *,
        work_related: bool = False,
        member_version: int | None = None,
    ) -> EventEnvelope:
        report = uuid.uuid4()
        return self.envelope(
            "InjuryReport",
            report,
            m.InjuryReported(
                report_id=report,
                member_id=member,
                occurred_on=occurred_on,
                work_related=work_related,
                reported_on=occurred_on,
                member_version=member_version or self.versions[str(member)],
            ),
        )


@dataclass
class ClaimsUnderTest:
    runtime: ServiceRuntime
    app: FastAPI
    http: httpx.AsyncClient
    feed: MembershipFeed
    claims_topic: str
    settings: ClaimsSettings


def claims_settings(
    database_url: str, kafka: str, membership_topic: str, claims_topic: str
) -> ClaimsSettings:
    return ClaimsSettings(
        CLAIMS_DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=kafka,
        CLAIMS_TOPIC=claims_topic,
        CLAIMS_MEMBERSHIP_TOPIC=membership_topic,
        relay_poll_interval=0.2,
        consumer_group_prefix=f"{membership_topic}.",
    )


@contextlib.asynccontextmanager
async def running_claims(
    settings: ClaimsSettings, *, group_suffix: str = "", inbox_name: str | None = None
) -> AsyncIterator[tuple[ServiceRuntime, FastAPI, httpx.AsyncClient]]:
    """``group_suffix``: a fresh consumer group replays the topic from offset 0; ``inbox_name``: a
    fresh inbox forgets what was processed (as after losing the inbox table)."""
    runtime = build_runtime(settings, clock=fixed(TODAY))
    for sub in runtime.subscriptions:
        sub.group_id += group_suffix
        if inbox_name:
            sub.consumer.name = inbox_name
    app = runtime.http_app([router], title="claims under test")
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://claims") as http,
    ):
        yield runtime, app, http


@pytest.fixture
async def claims(database_url: str, kafka: str) -> AsyncIterator[ClaimsUnderTest]:
    suffix = uuid.uuid4().hex[:10]
    membership_topic, claims_topic = f"test.{suffix}.membership", f"test.{suffix}.claims"
    await ensure_topics(kafka, [membership_topic, claims_topic])
    settings = claims_settings(database_url, kafka, membership_topic, claims_topic)
    feed = MembershipFeed(kafka, membership_topic)
    await feed.producer.start()
    try:
        async with running_claims(settings) as (runtime, app, http):
            yield ClaimsUnderTest(runtime, app, http, feed, claims_topic, settings)
    finally:
        await feed.producer.stop()
