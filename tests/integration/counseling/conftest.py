"""The counseling service in-process on a fresh database, with membership events fed over the
real broker, and helpers that walk an appointment through its life over HTTP."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date, datetime, time
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from fastapi import FastAPI

from services.counseling import tables as t
from services.counseling.app import create_app
from services.counseling.settings import CounselingSettings
from shared.clock import BEIJING
from shared.contracts import membership as m
from shared.contracts.common import Gender
from shared.eventstore import EventStore
from shared.kafka import ensure_topics
from shared.runtime import ServiceRuntime
from tests.kafka_support import eventually

STAFF = {"Authorization": "Bearer local-staff-token"}
SUPERVISOR = {"Authorization": "Bearer local-supervisor-token"}
INTEGRATOR = {"Authorization": "Bearer local-integrator-token"}
COUNSELOR_1 = {"Authorization": "Bearer local-counselor-token"}
COUNSELOR_2 = {"Authorization": "Bearer local-counselor-2-token"}

#: The business date the tests run on (the service's clock is injected).
TODAY = date(2026, 5, 11)


class MovableClock:
    """A clock the test can move: "the session is tomorrow" today, "it is today" tomorrow."""

    def __init__(self, day: date) -> None:
        self.day = day

    def __call__(self) -> date:
        return self.day


def at(day: date, hour: int, minute: int = 0) -> str:
    return datetime.combine(day, time(hour, minute), BEIJING).isoformat()


@dataclass
class CounselingUnderTest:
    runtime: ServiceRuntime
    app: FastAPI
    http: httpx.AsyncClient
    settings: CounselingSettings
    clock: MovableClock
    membership_topic: str
    kafka: str
    hours: list[int] = field(default_factory=lambda: list(range(8, 20)))

    @property
    def topic(self) -> str:
        return self.settings.topic

    async def ok(
        self, method: str, url: str, headers: dict[str, str], json: Any = None, status: int = 200
    ) -> Any:
        response = await self.http.request(method, url, headers=headers, json=json)
        assert response.status_code == status, response.text
        return response.json()

    async def counselor(self, subject: str = "counselor-1", name: str = "Dr. Wang Fang") -> str:
        body = {"display_name": name, "provider": "partner", "subject": subject}
        return str((await self.ok("POST", "/v1/counselors", STAFF, body, 201))["counselor_id"])

    async def slot(self, counselor_id: str, day: date = TODAY) -> str:
        hour = self.hours.pop(0)
        body = {"starts_at": at(day, hour), "ends_at": at(day, hour, 50)}
        return str(
            (await self.ok("POST", f"/v1/counselors/{counselor_id}/slots", STAFF, body, 201))["slot_id"]
        )

    async def book(self, slot_id: str, **client: Any) -> dict[str, Any]:
        if not client:
            client = {"resident": {"full_name": "Zhao Min", "phone": "13911112222"}}
        result: dict[str, Any] = await self.ok(
            "POST", "/v1/appointments", STAFF, {"slot_id": slot_id, **client}, 201
        )
        return result

    async def completed(self, notes: str, counselor: dict[str, str] = COUNSELOR_1, **client: Any) -> str:
        """A session of counselor-1 today, booked and completed with ``notes``."""
        counselor_id = await self.counselor_id_of("counselor-1") or await self.counselor()
        appointment = (await self.book(await self.slot(counselor_id), **client))["appointment_id"]
        await self.ok("POST", f"/v1/appointments/{appointment}/complete", counselor, {"notes": notes})
        return str(appointment)

    async def counselor_id_of(self, subject: str) -> str | None:
        async with self.runtime.engine.connect() as conn:
            found = await conn.scalar(
                sa.select(t.counselors.c.counselor_id).where(
                    t.counselors.c.subject == subject, t.counselors.c.active
                )
            )
        return None if found is None else str(found)

    async def member(self, member_id: uuid.UUID | None = None) -> uuid.UUID:
        """A member joins on membership.events; returns once this service has applied it."""
        member_id = member_id or uuid.uuid4()
        store = EventStore("membership", m.registry)
        [envelope] = store.envelopes(
            "Member",
            str(member_id),
            0,
            [
                m.MemberJoined(
                    member_id=member_id,
                    union_id=uuid.uuid4(),
                    full_name="Sun Lixia",
                    gender=Gender.FEMALE,
                    birth_date=date(1985, 2, 3),
                    joined_on=date(2015, 1, 5),
                )
            ],
            correlation_id=uuid.uuid4(),
        )
        producer = AIOKafkaProducer(bootstrap_servers=self.kafka, acks="all", enable_idempotence=True)
        await producer.start()
        try:
            await producer.send_and_wait(
                self.membership_topic,
                envelope.to_bytes(),
                key=envelope.kafka_key(),
                headers=envelope.kafka_headers(),
            )
        finally:
            await producer.stop()

        async def known() -> bool:
            async with self.runtime.engine.connect() as conn:
                return bool(
                    await conn.scalar(sa.select(t.members.c.active).where(t.members.c.member_id == member_id))
                )

        await eventually(known)
        return member_id


async def database_dump(service: CounselingUnderTest) -> str:
    """Every row of every table of the service's database, as text."""
    rows: list[str] = []
    async with service.runtime.engine.connect() as conn:
        tables = (
            await conn.execute(sa.text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
        ).scalars()
        for name in list(tables):
            rows.extend(
                str(r) for r in (await conn.execute(sa.text(f'SELECT t::text FROM "{name}" t'))).scalars()
            )
    # Events, read models, the vault: something is there to search (how many outbox rows are still
    # waiting depends on how fast the relay was, so only a floor).
    assert len(rows) >= 5
    return "\n".join(rows)


def counseling_settings(database_url: str, kafka: str, suffix: str, **extra: Any) -> CounselingSettings:
    values: dict[str, Any] = {
        "COUNSELING_DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "COUNSELING_TOPIC": f"test.{suffix}.counseling",
        "COUNSELING_MEMBERSHIP_TOPIC": f"test.{suffix}.membership",
        "relay_poll_interval": 0.2,
        "consumer_group_prefix": f"test.{suffix}.",
    }
    return CounselingSettings(**(values | extra))


@contextlib.asynccontextmanager
async def running(
    settings: CounselingSettings, clock: MovableClock
) -> AsyncIterator[tuple[ServiceRuntime, FastAPI, httpx.AsyncClient]]:
    app = create_app(settings, clock=clock)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://counseling") as http,
    ):
        yield app.state.runtime, app, http


@pytest.fixture
def suffix() -> str:
    return uuid.uuid4().hex[:10]


@pytest.fixture
async def counseling(database_url: str, kafka: str, suffix: str) -> AsyncIterator[CounselingUnderTest]:
    settings = counseling_settings(database_url, kafka, suffix)
    await ensure_topics(kafka, [settings.topic, settings.membership_topic])
    clock = MovableClock(TODAY)
    async with running(settings, clock) as (runtime, app, http):
        yield CounselingUnderTest(runtime, app, http, settings, clock, settings.membership_topic, kafka)
