"""The activities service in-process on a fresh database, fed membership events over the real broker."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from services.activities.app import ActivitiesSettings, create_app
from shared.clock import BEIJING
from shared.contracts import membership as m
from shared.envelope import EventEnvelope
from shared.kafka import ensure_topics
from shared.runtime import ServiceRuntime
from tests.integration.claims.conftest import MembershipFeed
from tests.kafka_support import eventually

STAFF = {"Authorization": "Bearer local-staff-token"}
#: The tests' "now": three weeks before Mother's Day 2026.
START = datetime(2026, 4, 20, 9, 0, tzinfo=BEIJING)
MOTHERS_DAY = datetime(2026, 5, 10, 9, 0, tzinfo=BEIJING)


@dataclass
class Clock:
    now: datetime = START

    def __call__(self) -> datetime:
        return self.now


@dataclass
class ActivitiesUnderTest:
    runtime: ServiceRuntime
    app: FastAPI
    http: httpx.AsyncClient
    feed: MembershipFeed
    topic: str
    clock: Clock
    union_id: uuid.UUID = field(default_factory=uuid.uuid4)

    async def member(self, *, left_on: date | None = None) -> uuid.UUID:
        """A member who joined (and left, with ``left_on``), once this service has seen it."""
        member = uuid.uuid4()
        envelopes = [self.joined(member)]
        if left_on is not None:
            envelopes.append(self.left(member, left_on))
        await self.feed.send(*envelopes)
        await self.known(member, active=left_on is None)
        return member

    def joined(self, member: uuid.UUID) -> EventEnvelope:
        env = self.feed.joined(member)
        data = dict(env.data, union_id=str(self.union_id))
        return env.model_copy(update={"data": data})

    def left(self, member: uuid.UUID, left_on: date) -> EventEnvelope:
        return self.feed.envelope(
            "Member", member, m.MemberLeft(member_id=member, left_on=left_on, reason=m.LeaveReason.MOVED)
        )

    async def members(self, n: int) -> list[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(n)]
        await self.feed.send(*(self.joined(i) for i in ids))
        for i in ids:
            await self.known(i)
        return ids

    async def known(self, member: uuid.UUID, *, active: bool = True) -> None:
        from services.activities import views

        async def seen() -> bool:
            async with self.runtime.engine.connect() as conn:
                standing = await views.member_standing(conn, member)
            return standing.known and standing.active == active

        await eventually(seen, timeout=30)

    async def schedule(self, **overrides: Any) -> str:
        body: dict[str, Any] = {
            "kind": "parent_child",
            "title": "Mother's Day at the flower centre",
            "starts_at": MOTHERS_DAY.isoformat(),
            "ends_at": (MOTHERS_DAY + timedelta(hours=3)).isoformat(),
            "venue": "Shunyi flower centre",
            "capacity": 5,
            "audience": "members",
            "union_id": str(self.union_id),
        } | overrides
        r = await self.http.post("/v1/activities", json=body, headers=STAFF)
        assert r.status_code == 201, r.text
        activity_id: str = r.json()["activity_id"]
        return activity_id

    async def register(self, activity_id: str, body: dict[str, Any], **headers: str) -> httpx.Response:
        return await self.http.post(
            f"/v1/activities/{activity_id}/registrations", json=body, headers=STAFF | headers
        )

    async def get(self, path: str) -> Any:
        r = await self.http.get(path, headers=STAFF)
        assert r.status_code == 200, r.text
        return r.json()


def activities_settings(
    database_url: str, kafka: str, membership_topic: str, topic: str
) -> ActivitiesSettings:
    return ActivitiesSettings(
        ACTIVITIES_DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=kafka,
        ACTIVITIES_TOPIC=topic,
        ACTIVITIES_MEMBERSHIP_TOPIC=membership_topic,
        relay_poll_interval=0.2,
        consumer_group_prefix=f"{membership_topic}.",
    )


@contextlib.asynccontextmanager
async def running_activities(
    settings: ActivitiesSettings, clock: Clock
) -> AsyncIterator[tuple[FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://activities", timeout=60
        ) as http,
    ):
        yield app, http


@pytest.fixture
async def activities(database_url: str, kafka: str) -> AsyncIterator[ActivitiesUnderTest]:
    suffix = uuid.uuid4().hex[:10]
    membership_topic, topic = f"test.{suffix}.membership", f"test.{suffix}.activities"
    await ensure_topics(kafka, [membership_topic, topic])
    settings = activities_settings(database_url, kafka, membership_topic, topic)
    feed = MembershipFeed(kafka, membership_topic)
    clock = Clock()
    await feed.producer.start()
    try:
        async with running_activities(settings, clock) as (app, http):
            await eventually(lambda: _assigned(app), timeout=30)
            yield ActivitiesUnderTest(app.state.runtime, app, http, feed, topic, clock)
    finally:
        await feed.producer.stop()


async def _assigned(app: FastAPI) -> bool:
    runtime: ServiceRuntime = app.state.runtime
    return all(sub.loop.assigned.is_set() for sub in runtime.subscriptions)
