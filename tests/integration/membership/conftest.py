"""One membership app per test module, on its own fresh database and its own Kafka topics.

The app runs in-process (httpx ASGI transport) inside its real lifespan: Alembic migrations, the
outbox relay to the real broker, the claims consumer. Tests share it and use fresh ids.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date

import asyncpg
import httpx
import pytest
from fastapi import FastAPI

from services.membership.app import create_app
from services.membership.settings import MembershipSettings
from services.membership.vault import Vault
from shared.runtime import ServiceRuntime
from tests.infra import Infra

#: The business date the app judges commands against (the seed's August 2016).
TODAY = date(2016, 8, 10)


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


@dataclass
class Service:
    app: FastAPI
    client: httpx.AsyncClient
    settings: MembershipSettings
    kafka: str
    logs: list[str]
    #: every national ID, phone, card number and health text the tests sent in
    secrets: list[str] = field(default_factory=list)

    @property
    def runtime(self) -> ServiceRuntime:
        runtime: ServiceRuntime = self.app.state.runtime
        return runtime

    @property
    def vault(self) -> Vault:
        vault: Vault = self.app.state.vault
        return vault

    @property
    def topic(self) -> str:
        return str(self.settings.topic)

    @property
    def claims_topic(self) -> str:
        return self.settings.claims_topic


@pytest.fixture(scope="module")
async def module_database_url(infra: Infra) -> AsyncIterator[str]:
    name = f"t_membership_{uuid.uuid4().hex[:12]}"
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
async def service(module_database_url: str, infra: Infra) -> AsyncIterator[Service]:
    run = uuid.uuid4().hex[:12]
    settings = MembershipSettings(
        MEMBERSHIP_DATABASE_URL=module_database_url,
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka,
        MEMBERSHIP_TOPIC=f"test.{run}.membership.events",
        MEMBERSHIP_CLAIMS_TOPIC=f"test.{run}.claims.events",
        MEMBERSHIP_ACTIVITIES_TOPIC=f"test.{run}.activities.events",
        MEMBERSHIP_MEDIATION_TOPIC=f"test.{run}.mediation.events",
        consumer_group_prefix=f"test.{run}.",
    )
    app = create_app(settings, clock=lambda: TODAY)
    collector = _Collect()
    root = logging.getLogger()
    old_level = root.level
    sql = logging.getLogger("sqlalchemy.engine")
    old_sql_level = sql.level
    root.addHandler(collector)
    root.setLevel(logging.INFO)
    sql.setLevel(logging.INFO)  # every SQL statement with its parameters goes through the check too
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app)
            async with httpx.AsyncClient(transport=transport, base_url="http://membership") as client:
                yield Service(app, client, settings, infra.kafka, collector.lines)
    finally:
        root.removeHandler(collector)
        root.setLevel(old_level)
        sql.setLevel(old_sql_level)


@pytest.fixture(scope="module")
async def tree(service: Service) -> dict[str, str]:
    """A municipal -> district -> street -> grassroots chain of this module's service."""
    from tests.integration.membership.support import union_tree

    return await union_tree(service)
