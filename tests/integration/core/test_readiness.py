"""Readiness means "can serve requests": with Kafka down the API stays in its Service."""

from __future__ import annotations

import httpx
import pytest

from services.membership.app import create_app
from services.membership.settings import MembershipSettings
from tests.kafka_broker import free_port

pytestmark = pytest.mark.integration

STAFF = {"Authorization": "Bearer local-staff-token"}


async def test_ready_and_accepting_writes_while_kafka_is_unreachable(database_url: str) -> None:
    settings = MembershipSettings(
        MEMBERSHIP_DATABASE_URL=database_url,
        KAFKA_BOOTSTRAP_SERVERS=f"127.0.0.1:{free_port()}",  # nothing listens there
    )
    app = create_app(settings)
    transport = httpx.ASGITransport(app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://m") as client,
    ):
        ready = await client.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json()["checks"] == {"database": True}
        created = await client.post(
            "/v1/unions", json={"name": "Beijing Federation", "level": "municipal"}, headers=STAFF
        )
        assert created.status_code == 201, created.text  # the outbox absorbs the outage
        details = (await client.get("/healthz/details")).json()
        assert details["checks"]["kafka"] is False
        assert details["checks"]["database"] is True


async def test_not_ready_when_the_database_is_unreachable(database_url: str) -> None:
    dead = database_url.rsplit("@", 1)[0] + f"@127.0.0.1:{free_port()}/nowhere"
    settings = MembershipSettings(MEMBERSHIP_DATABASE_URL=dead)
    app = create_app(settings)
    # No lifespan: migrations could not run; readiness alone must say so.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert ready.json()["checks"] == {"database": False}
