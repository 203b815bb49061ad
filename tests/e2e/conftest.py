from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest

from shared.kafka import ensure_topics
from tests.e2e.processes import ServiceProcess
from tests.infra import Infra


@pytest.fixture
async def service_databases(infra: Infra) -> AsyncIterator[dict[str, str]]:
    """A fresh database per service (asyncpg URLs), dropped afterwards."""
    names = {s: f"e2e_{s}_{uuid.uuid4().hex[:10]}" for s in ("membership", "claims")}
    admin = await asyncpg.connect(infra.admin_url)
    try:
        for db in names.values():
            await admin.execute(f'CREATE DATABASE "{db}"')
    finally:
        await admin.close()
    base = infra.admin_url.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    yield {s: f"{base}/{db}" for s, db in names.items()}
    admin = await asyncpg.connect(infra.admin_url)
    try:
        for db in names.values():
            await admin.execute(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)')
    finally:
        await admin.close()


@dataclass
class System:
    """Membership and claims as real processes on fresh databases and topics."""

    membership: ServiceProcess
    claims: ServiceProcess
    topics: dict[str, str]
    #: What both processes were started with, so a test can start another replica alike.
    env: dict[str, str]
    tmp_path: Path

    def claims_replica(self) -> ServiceProcess:
        return ServiceProcess("claims", dict(self.claims.extra_env), self.tmp_path)


@pytest.fixture
async def services(infra: Infra, service_databases: dict[str, str], tmp_path: Path) -> AsyncIterator[System]:
    suffix = uuid.uuid4().hex[:10]
    topics = {
        "membership": f"e2e.{suffix}.membership.events",
        "claims": f"e2e.{suffix}.claims.events",
        "activities": f"e2e.{suffix}.activities.events",
        "mediation": f"e2e.{suffix}.mediation.events",
    }
    await ensure_topics(infra.kafka, topics.values())
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "UNION_RELAY_POLL_INTERVAL": "0.2",
        "MEMBERSHIP_TOPIC": topics["membership"],
        "CLAIMS_TOPIC": topics["claims"],
        "CLAIMS_MEMBERSHIP_TOPIC": topics["membership"],
        "MEMBERSHIP_CLAIMS_TOPIC": topics["claims"],
        "MEMBERSHIP_ACTIVITIES_TOPIC": topics["activities"],
        "MEMBERSHIP_MEDIATION_TOPIC": topics["mediation"],
        "ACTIVITIES_TOPIC": topics["activities"],
        "ACTIVITIES_MEMBERSHIP_TOPIC": topics["membership"],
        "UNION_CONSUMER_GROUP_PREFIX": f"e2e.{suffix}.",
    }
    membership = ServiceProcess(
        "membership", {**common, "MEMBERSHIP_DATABASE_URL": service_databases["membership"]}, tmp_path
    )
    claims = ServiceProcess(
        "claims", {**common, "CLAIMS_DATABASE_URL": service_databases["claims"]}, tmp_path
    )
    membership.start()
    claims.start()
    try:
        yield System(membership, claims, topics, common, tmp_path)
    finally:
        codes = (claims.stop(), membership.stop())
    # uvicorn re-raises SIGTERM after a clean shutdown, so -15 is the graceful exit code here.
    assert set(codes) <= {0, -15}, f"graceful SIGTERM shutdown expected, got {codes}"
    for service in (claims, membership):
        assert "Application shutdown complete" in service.log.read_text(), (
            f"{service.name} did not shut down cleanly"
        )


@pytest.fixture
async def counseling_process(infra: Infra, services: System) -> AsyncIterator[ServiceProcess]:
    """The counseling service as a process beside ``services``, fed by its membership topic."""
    name = f"e2e_counseling_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = infra.admin_url.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    topic = services.topics["membership"].replace(".membership.", ".counseling.")
    await ensure_topics(infra.kafka, [topic])
    env = {
        **services.env,
        "COUNSELING_DATABASE_URL": f"{base}/{name}",
        "COUNSELING_TOPIC": topic,
        "COUNSELING_MEMBERSHIP_TOPIC": services.topics["membership"],
    }
    counseling = ServiceProcess("counseling", env, services.tmp_path)
    counseling.start()
    try:
        yield counseling
    finally:
        code = counseling.stop()
        admin = await asyncpg.connect(infra.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    assert code in {0, -15}, f"graceful SIGTERM shutdown expected, got {code}"


@pytest.fixture
async def activities_service(infra: Infra, services: System) -> AsyncIterator[ServiceProcess]:
    """The activities service as a process beside ``services``, on its own fresh database,
    consuming the same membership topic."""
    name = f"e2e_activities_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = infra.admin_url.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    env = {**services.env, "ACTIVITIES_DATABASE_URL": f"{base}/{name}"}
    activities = ServiceProcess("activities", env, services.tmp_path)
    activities.start()
    try:
        yield activities
    finally:
        code = activities.stop()
        admin = await asyncpg.connect(infra.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
    assert code in {0, -15}, f"graceful SIGTERM shutdown expected, got {code}"
