"""Fixtures: the real PostgreSQL and Kafka, with a fresh database and fresh topics per test."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from shared.migrations import create_consumer_tables, create_core_tables
from tests.contract_check import EmittedEvents
from tests.infra import Infra, discover
from tests.topic_hygiene import tidy_topics

#: Every envelope the services store while the suite runs, checked against the published schemas.
EMITTED = EmittedEvents()


def pytest_configure(config: pytest.Config) -> None:
    EMITTED.install()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if EMITTED.violations:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not EMITTED.seen:
        return
    counts = ", ".join(f"{t} v{v}: {n}" for (t, v), n in sorted(EMITTED.seen.items()))
    terminalreporter.write_line(f"contract check: {sum(EMITTED.seen.values())} emitted events ({counts})")
    if EMITTED.never_seen():
        terminalreporter.write_line(
            f"contract check: never emitted in this run: {', '.join(EMITTED.never_seen())}"
        )
    if EMITTED.violations:
        terminalreporter.write_line(
            f"contract check FAILED: {len(EMITTED.violations)} event(s) do not match their published schema:",
            red=True,
        )
        for line in EMITTED.violations[:50]:
            terminalreporter.write_line(f"  {line}", red=True)


@pytest.fixture(scope="session")
def infra() -> Iterator[Infra]:
    with discover() as found:
        if found.source == "local":
            with tidy_topics(found.kafka):
                yield found
        else:
            yield found


def _with_database(url: str, name: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{name}"


@pytest.fixture
async def database_url(infra: Infra) -> AsyncIterator[str]:
    """A brand-new, empty database for this test (asyncpg SQLAlchemy URL); dropped afterwards."""
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    yield _with_database(infra.admin_url, name).replace("postgresql://", "postgresql+asyncpg://", 1)
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def core_engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    """An engine on a fresh database holding just the event-sourcing core tables."""
    engine = create_async_engine(database_url, pool_size=10, max_overflow=10)
    async with engine.begin() as conn:
        await conn.run_sync(create_core_tables)
        await conn.run_sync(create_consumer_tables)
    yield engine
    await engine.dispose()


@pytest.fixture
def kafka(infra: Infra) -> str:
    return infra.kafka


@pytest.fixture
def topic() -> str:
    """A topic name no other test uses."""
    return f"test.{uuid.uuid4().hex[:12]}.events"
