"""Production mode never creates Kafka topics: relay and consumers wait, visibly, for them."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from services.membership.app import build_runtime
from services.membership.settings import MembershipSettings
from shared.kafka import awaited_topics, missing_topics
from shared.runtime import ServiceRuntime
from tests.infra import Infra
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
async def production_database(infra: Infra) -> AsyncIterator[str]:
    """A database and role with a generated password (production mode refuses the local ones)."""
    role, password = f"p_{uuid.uuid4().hex[:12]}", secrets.token_hex(16)
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
        await admin.execute(f"GRANT {role} TO CURRENT_USER")
        await admin.execute(f'CREATE DATABASE "{role}" OWNER {role}')
    finally:
        await admin.close()
    server = infra.admin_url.split("@", 1)[1].rsplit("/", 1)[0]
    yield f"postgresql+asyncpg://{role}:{password}@{server}/{role}"
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)')
        await admin.execute(f"DROP ROLE IF EXISTS {role}")
    finally:
        await admin.close()


@pytest.fixture
async def production_runtime(
    infra: Infra, production_database: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[ServiceRuntime, list[str]]]:
    suffix = uuid.uuid4().hex[:10]
    own, upstream = f"prod.{suffix}.membership.events", f"prod.{suffix}.claims.events"
    for name, value in {
        "UNION_MODE": "production",
        "UNION_API_TOKENS": json.dumps({secrets.token_hex(32): "staff"}),
        "UNION_PII_KEY": base64.b64encode(os.urandom(32)).decode(),
        "UNION_METRICS_TOKEN": secrets.token_hex(32),
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "MEMBERSHIP_DATABASE_URL": production_database,
        "MEMBERSHIP_TOPIC": own,
        "MEMBERSHIP_CLAIMS_TOPIC": upstream,
        "MEMBERSHIP_ACTIVITIES_TOPIC": f"prod.{suffix}.activities.events",
        "MEMBERSHIP_MEDIATION_TOPIC": f"prod.{suffix}.mediation.events",
        "UNION_RELAY_POLL_INTERVAL": "0.2",
    }.items():
        monkeypatch.setenv(name, value)
    runtime = build_runtime(MembershipSettings())
    # The claims.events consumer only: the test follows one upstream topic and its DLQ.
    runtime.subscriptions[:] = [s for s in runtime.subscriptions if s.consumer.name == "claims"]
    assert runtime.create_topics is False
    yield runtime, [own, upstream, f"{upstream}.dlq"]
    await runtime.stop()


async def test_production_waits_for_topics_and_never_creates_them(
    infra: Infra, production_runtime: tuple[ServiceRuntime, list[str]], caplog: pytest.LogCaptureFixture
) -> None:
    runtime, topics = production_runtime
    caplog.set_level(logging.INFO, logger="shared.kafka")
    await runtime.start()
    app = runtime.http_app([], title="t")  # /readyz without the lifespan (already started)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as http:

        async def waiting_for_all() -> bool:
            return set(topics) <= set(awaited_topics())

        await eventually(waiting_for_all, timeout=30)
        await asyncio.sleep(3)  # several polls: still nothing created
        assert await missing_topics(infra.kafka, topics) == topics
        assert not runtime.relay.ready.is_set()
        r = await http.get("/readyz")
        assert r.status_code == 503
        assert r.json()["checks"]["topics"] is False
        assert set(topics) <= set(r.json()["missing_topics"])
        warned = [
            rec.getMessage() for rec in caplog.records if "waiting for Kafka topics" in rec.getMessage()
        ]
        assert any(all(t in m for t in topics[1:]) for m in warned) and any(topics[0] in m for m in warned)

        admin = AIOKafkaAdminClient(bootstrap_servers=infra.kafka)  # the Topic Operator's part
        await admin.start()
        try:
            await admin.create_topics([NewTopic(t, num_partitions=3, replication_factor=1) for t in topics])
        finally:
            await admin.close()

        async def relay_ready() -> bool:
            return runtime.relay.ready.is_set() and not set(topics) & set(awaited_topics())

        await eventually(relay_ready, timeout=30)

        async def ready() -> bool:
            return (await http.get("/readyz")).status_code == 200

        await eventually(ready, timeout=30)
        assert "missing_topics" not in (await http.get("/readyz")).json()


async def test_a_service_waiting_for_topics_stops_promptly(
    production_runtime: tuple[ServiceRuntime, list[str]],
) -> None:
    runtime, topics = production_runtime
    await runtime.start()

    async def waiting() -> bool:
        return set(topics) <= set(awaited_topics())

    await eventually(waiting, timeout=30)
    started = time.monotonic()
    await runtime.stop()
    assert time.monotonic() - started < 5
    assert not set(topics) & set(awaited_topics())
    # Every task has ended: cancelled, or (the relay) returned on its own once told to stop;
    # none of them failed.
    assert all(t.done() for t in runtime._tasks)
    assert [t.get_name() for t in runtime._tasks if not t.cancelled() and t.exception()] == []
