"""Start-up migrations as operators meet them: a database that appears late, and passwords as
password generators make them (with "%" and the other characters URLs reserve)."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

import asyncpg
import pytest
from sqlalchemy.exc import DBAPIError

from services.membership.app import MIGRATIONS
from services.membership.settings import MembershipSettings
from shared.migrations import upgrade_to_head
from tests.infra import Infra

pytestmark = pytest.mark.integration

#: Every character that means something in a URL or to configparser, and a quote for SQL.
NASTY_PASSWORD = "p%41%%w@rd:/?#[]&=+$,;~ '\"x%"


def _server(admin_url: str) -> str:
    """host:port of the admin URL."""
    return admin_url.split("@", 1)[1].rsplit("/", 1)[0]


async def _admin(infra: Infra, *sql: str) -> None:
    conn = await asyncpg.connect(infra.admin_url)
    try:
        for statement in sql:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture
def late_database(infra: Infra) -> tuple[str, str]:
    """(name, URL) of a database that does not exist yet."""
    name = f"late_{uuid.uuid4().hex[:12]}"
    url = infra.admin_url.rsplit("/", 1)[0] + f"/{name}"
    return name, url.replace("postgresql://", "postgresql+asyncpg://", 1)


@pytest.fixture
async def nasty_role(infra: Infra) -> AsyncIterator[tuple[str, str]]:
    """(role, database) owned by a role whose password is ``NASTY_PASSWORD``."""
    role = f"r_{uuid.uuid4().hex[:12]}"
    literal = NASTY_PASSWORD.replace("'", "''")
    await _admin(
        infra,
        f"CREATE ROLE {role} LOGIN PASSWORD '{literal}'",
        f"GRANT {role} TO CURRENT_USER",  # CREATEROLE without superuser: needed to hand it a database
        f'CREATE DATABASE "{role}" OWNER {role}',
    )
    yield role, role
    await _admin(infra, f'DROP DATABASE IF EXISTS "{role}" WITH (FORCE)', f"DROP ROLE IF EXISTS {role}")


async def _tables(infra: Infra, database: str) -> set[str]:
    conn = await asyncpg.connect(infra.admin_url.rsplit("/", 1)[0] + f"/{database}")
    try:
        rows = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await conn.close()
    return {r["tablename"] for r in rows}


async def test_migrations_wait_for_a_database_created_after_start(
    infra: Infra, late_database: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    name, url = late_database
    caplog.set_level(logging.INFO, logger="shared.migrations")
    upgrade = asyncio.create_task(upgrade_to_head(MIGRATIONS, url, wait_seconds=30))
    try:
        await asyncio.sleep(3)
        assert not upgrade.done(), upgrade  # still waiting, not crashed
        await _admin(infra, f'CREATE DATABASE "{name}"')
        await asyncio.wait_for(upgrade, timeout=30)
        assert {"events", "outbox", "alembic_version"} <= await _tables(infra, name)
        waits = [r for r in caplog.records if "not reachable yet" in r.getMessage()]
        assert waits and "3D000" in waits[0].getMessage()  # logged, with the reason
        assert all(name not in r.getMessage() or "@" not in r.getMessage() for r in caplog.records)
    finally:
        upgrade.cancel()
        await _admin(infra, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


async def test_migrations_give_up_when_the_wait_is_over(
    late_database: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    _, url = late_database
    started = time.monotonic()
    with pytest.raises(DBAPIError):
        await upgrade_to_head(MIGRATIONS, url, wait_seconds=1.5)
    assert time.monotonic() - started < 10
    assert any("giving up" in r.getMessage() for r in caplog.records)


async def test_a_password_with_percent_and_url_characters_migrates(
    infra: Infra, nasty_role: tuple[str, str]
) -> None:
    role, database = nasty_role
    url = (
        f"postgresql+asyncpg://{role}:{quote(NASTY_PASSWORD, safe='')}@{_server(infra.admin_url)}/{database}"
    )
    await upgrade_to_head(MIGRATIONS, url)
    assert "alembic_version" in await _tables(infra, database)


async def test_the_password_variable_needs_no_url_encoding(
    infra: Infra, nasty_role: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MEMBERSHIP_DATABASE_PASSWORD: the raw secret, as Kubernetes hands it over."""
    role, database = nasty_role
    monkeypatch.setenv(
        "MEMBERSHIP_DATABASE_URL", f"postgresql+asyncpg://{role}@{_server(infra.admin_url)}/{database}"
    )
    monkeypatch.setenv("MEMBERSHIP_DATABASE_PASSWORD", NASTY_PASSWORD)
    settings = MembershipSettings()
    assert NASTY_PASSWORD not in repr(settings)
    await upgrade_to_head(MIGRATIONS, settings.database_url)
    assert "alembic_version" in await _tables(infra, database)
