from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

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
