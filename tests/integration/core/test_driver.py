"""shared/driver.py on the real PostgreSQL: asyncpg statements inside SQLAlchemy's transaction,
and errors raised as SQLAlchemy would raise them (pins the adapter internals it relies on)."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import driver

pytestmark = pytest.mark.integration


async def _table(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.execute(sa.text("CREATE TABLE IF NOT EXISTS drv (id int PRIMARY KEY)"))


async def _count(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(sa.text("SELECT count(*) FROM drv"))).scalar_one())


async def test_a_first_statement_on_the_driver_is_inside_the_transaction(core_engine: AsyncEngine) -> None:
    """SQLAlchemy sends BEGIN with its first statement; one sent to asyncpg first must not be
    autocommitted (a rollback undoes it)."""
    await _table(core_engine)
    async with core_engine.connect() as conn:
        tx = await conn.begin()
        await driver.execute(conn, "INSERT INTO drv VALUES ($1)", 1)
        assert (await driver.driver(conn)).is_in_transaction()
        await tx.rollback()
    assert await _count(core_engine) == 0
    async with core_engine.connect() as conn:
        tx = await conn.begin()
        await driver.execute(conn, "INSERT INTO drv VALUES ($1)", 2)
        await conn.execute(sa.text("INSERT INTO drv VALUES (3)"))  # the same transaction
        await tx.commit()
    assert await _count(core_engine) == 2


async def test_a_unique_violation_is_sqlalchemys_integrity_error(core_engine: AsyncEngine) -> None:
    await _table(core_engine)
    async with core_engine.begin() as conn:
        await driver.execute(conn, "INSERT INTO drv VALUES ($1)", 7)
    async with core_engine.connect() as conn:
        await conn.begin()
        with pytest.raises(IntegrityError) as caught:
            await driver.execute(conn, "INSERT INTO drv VALUES ($1)", 7)
        assert "drv_pkey" in str(caught.value.orig)
        assert not caught.value.connection_invalidated


async def test_a_lost_connection_is_an_invalidated_dbapi_error(
    core_engine: AsyncEngine, database_url: str
) -> None:
    """What ``retrying`` and ``is_transient`` look for: ``connection_invalidated``; and the pool
    gets a fresh connection afterwards."""
    await _table(core_engine)
    async with core_engine.connect() as conn:
        await conn.begin()
        pid = (await driver.fetch(conn, "SELECT pg_backend_pid()"))[0][0]
        admin = await asyncpg.connect(database_url.replace("+asyncpg", ""))
        try:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        with pytest.raises(DBAPIError) as caught:
            await driver.fetch(conn, "SELECT 1")
        assert caught.value.connection_invalidated
    async with core_engine.connect() as conn:
        assert (await driver.fetch(conn, "SELECT 41 + 1"))[0][0] == 42
