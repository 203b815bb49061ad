"""The claims migrations create exactly the schema services/claims/tables.py describes, and a
projection rebuilt from the event store equals the one kept inline."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.claims import tables as t
from services.claims.projections import own_projection
from shared.projections import rebuild
from shared.tables import consumer_metadata, core_metadata
from tests.integration.claims.conftest import ClaimsUnderTest
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration


async def test_migrated_schema_matches_the_table_definitions(claims: ClaimsUnderTest) -> None:
    def diff(sync_conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(sync_conn)
        return list(compare_metadata(context, [core_metadata, consumer_metadata, t.metadata]))  # type: ignore[arg-type]

    async with claims.runtime.engine.connect() as conn:
        assert await conn.run_sync(diff) == []
        seeded = await conn.scalar(sa.select(sa.func.count()).select_from(t.plans))
    assert seeded == 7


async def test_rebuilt_claims_read_model_equals_the_inline_one(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member))
    reports = [f.injury(member, date(2016, 8, d)) for d in (1, 2, 3)]
    await f.send(*reports)

    async def decided() -> bool:
        async with claims.runtime.engine.connect() as conn:
            n = await conn.scalar(sa.select(sa.func.count()).select_from(t.claims))
        return n == 3

    await eventually(decided)

    async def snapshot() -> list[Any]:
        async with claims.runtime.engine.connect() as conn:
            return [tuple(r) for r in await conn.execute(sa.select(t.claims).order_by(t.claims.c.claim_id))]

    before = await snapshot()
    replayed = await rebuild(claims.runtime.engine, claims.runtime.store, own_projection)
    assert replayed == 3 and await snapshot() == before
