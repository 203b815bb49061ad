"""The mediation service in-process (its real lifespan: migrations, relay to the real broker, the
consumer of membership events) on a fresh database and fresh topics, one per test module.

The union tree arrives as membership would publish it: ``UnionRegistered`` envelopes on the
membership topic. Tokens are station-bound grants for that tree, made before the app starts.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.mediation.app import create_app
from services.mediation.settings import MediationSettings
from shared.contracts import membership as m
from shared.contracts.common import Gender
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.eventstore import EventStore
from shared.kafka import ensure_topics
from shared.runtime import ServiceRuntime
from shared.tables import events
from tests.infra import Infra
from tests.kafka_support import Received, eventually, read_topic


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class MembershipFeed:
    """Publishes membership events the way its relay does (envelope, key, headers, versions)."""

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

    def union(self, union_id: uuid.UUID, level: str, parent: uuid.UUID | None, name: str) -> EventEnvelope:
        return self.envelope(
            "Union",
            union_id,
            m.UnionRegistered(
                union_id=union_id, name=name, level=m.UnionLevel(level), parent_union_id=parent
            ),
        )

    def member(self, member_id: uuid.UUID, union_id: uuid.UUID) -> EventEnvelope:
        return self.envelope(
            "Member",
            member_id,
            m.MemberJoined(
                member_id=member_id,
                union_id=union_id,
                full_name="王秀兰",
                gender=Gender.FEMALE,
                birth_date=date(1984, 5, 2),
                joined_on=date(2020, 1, 1),
            ),
        )


@dataclass
class Tree:
    municipal: uuid.UUID = field(default_factory=uuid.uuid4)
    district: uuid.UUID = field(default_factory=uuid.uuid4)
    street: uuid.UUID = field(default_factory=uuid.uuid4)
    other_street: uuid.UUID = field(default_factory=uuid.uuid4)
    grassroots: uuid.UUID = field(default_factory=uuid.uuid4)


def token(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {name}-{'x' * 8}"}


@dataclass
class Clock:
    today: date = date(2026, 9, 16)

    def __call__(self) -> date:
        return self.today


@dataclass
class Mediation:
    app: FastAPI
    http: httpx.AsyncClient
    settings: MediationSettings
    feed: MembershipFeed
    tree: Tree
    clock: Clock
    kafka: str
    logs: list[str]

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    async def post(
        self, path: str, body: dict[str, Any] | None, who: str = "staff", **headers: str
    ) -> httpx.Response:
        return await self.http.post(f"/v1{path}", json=body, headers={**token(who), **headers})

    async def get(self, path: str, who: str = "staff") -> httpx.Response:
        return await self.http.get(f"/v1{path}", headers=token(who))

    async def sweep_on(self, day: str, who: str = "staff") -> httpx.Response:
        """The sweep run on ``day`` as that day's sweep: the clock is set to it (a sweep for a
        day after today is refused), and back afterwards."""
        saved = self.clock.today
        self.clock.today = date.fromisoformat(day)
        try:
            return await self.post("/deadlines/sweep", {"on": day}, who)
        finally:
            self.clock.today = saved

    async def stored_events(self, event_type: str | None = None) -> list[dict[str, Any]]:
        query = sa.select(events.c.event_type, events.c.stream_id, events.c.data).order_by(events.c.position)
        if event_type:
            query = query.where(events.c.event_type == event_type)
        async with self.runtime.engine.connect() as conn:
            return [dict(r) for r in (await conn.execute(query)).mappings()]

    async def published(self) -> list[Received]:
        """Everything on the mediation topic, once every stored event has arrived."""
        expect = len(await self.stored_events())
        return await read_topic(self.kafka, self.settings.topic, expect=expect)

    async def new_case(
        self, *, union_id: uuid.UUID | None = None, who: str = "staff", **fields: Any
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "union_id": str(union_id or self.tree.street),
            "worker": {"full_name": "李建国", "phone": "13911112222"},
            "employer": {"name": "顺义某物流有限公司", "credit_code": "91110113MA01ABCD2X"},
            "category": "wages",
            "claim_text": "三个月工资未发",
            "amount": "8600.00",
            "learned_on": "2026-08-31",
        }
        body.update(fields)
        response = await self.post("/cases", body, who)
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer


@pytest.fixture(scope="module")
async def module_database_url(infra: Infra) -> AsyncIterator[str]:
    name = f"t_mediation_{uuid.uuid4().hex[:12]}"
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


@pytest.fixture(scope="module")
async def mediation(module_database_url: str, infra: Infra) -> AsyncIterator[Mediation]:
    run = uuid.uuid4().hex[:12]
    tree = Tree()
    grants = {
        f"staff-{'x' * 8}": "staff",
        f"supervisor-{'x' * 8}": "supervisor",
        f"integrator-{'x' * 8}": "integrator",
        f"street-{'x' * 8}": {"role": "staff", "subject": "street-clerk", "union_id": str(tree.street)},
        f"mediator-1-{'x' * 8}": {"role": "staff", "subject": "mediator-1", "union_id": str(tree.street)},
        f"mediator-2-{'x' * 8}": {"role": "staff", "subject": "mediator-2", "union_id": str(tree.street)},
        f"other-street-{'x' * 8}": {
            "role": "staff",
            "subject": "other-clerk",
            "union_id": str(tree.other_street),
        },
        f"district-{'x' * 8}": {
            "role": "staff",
            "subject": "district-mediator",
            "union_id": str(tree.district),
        },
    }
    membership_topic = f"test.{run}.membership.events"
    settings = MediationSettings(
        MEDIATION_DATABASE_URL=module_database_url,
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka,
        MEDIATION_TOPIC=f"test.{run}.mediation.events",
        MEDIATION_MEMBERSHIP_TOPIC=membership_topic,
        consumer_group_prefix=f"test.{run}.",
        relay_poll_interval=0.2,
        api_tokens=json.dumps(grants),
    )
    await ensure_topics(infra.kafka, [membership_topic])
    feed = MembershipFeed(infra.kafka, membership_topic)
    clock = Clock()
    app = create_app(settings, clock=clock)
    collector = _Collect()
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(collector)
    root.setLevel(logging.INFO)
    await feed.producer.start()
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://mediation") as http:
                service = Mediation(app, http, settings, feed, tree, clock, infra.kafka, collector.lines)
                await feed.send(
                    feed.union(tree.municipal, "municipal", None, "Beijing Federation of Trade Unions"),
                    feed.union(tree.district, "district", tree.municipal, "Shunyi District Federation"),
                    feed.union(tree.street, "street", tree.district, "Shi Yuan Street Federation"),
                    feed.union(tree.other_street, "street", tree.district, "Guang Ming Street Federation"),
                    feed.union(tree.grassroots, "grassroots", tree.street, "Wulicang Second Community Union"),
                )

                async def tree_known() -> bool:
                    return (await service.get(f"/stations/{tree.other_street}")).status_code == 200 and (
                        await service.get(f"/stations/{tree.street}")
                    ).status_code == 200

                await eventually(tree_known, timeout=60)
                yield service
    finally:
        await feed.producer.stop()
        root.removeHandler(collector)
        root.setLevel(old_level)
