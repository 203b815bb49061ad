"""The mediation migration creates exactly the schema tables.py describes (and the audit trail),
and the read models rebuilt from the event store equal the ones kept inline."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.mediation import tables as t
from services.mediation.projections import rebuild_read_models
from shared.audit import audit_metadata
from shared.tables import consumer_metadata, core_metadata
from tests.integration.mediation.conftest import Mediation

pytestmark = pytest.mark.integration


async def test_migrated_schema_matches_the_table_definitions(mediation: Mediation) -> None:
    def diff(sync_conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(sync_conn)
        return list(compare_metadata(context, [core_metadata, consumer_metadata, audit_metadata, t.metadata]))  # type: ignore[arg-type]

    async with mediation.runtime.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_rebuilt_read_models_equal_the_inline_ones(mediation: Mediation) -> None:
    case = await mediation.new_case()
    await mediation.post(
        f"/cases/{case['case_id']}/sessions",
        {
            "starts_at": "2026-12-01T09:00:00+08:00",
            "ends_at": "2026-12-01T10:00:00+08:00",
            "mediator": "mediator-1",
        },
    )
    await mediation.post(f"/cases/{case['case_id']}/escalate", {"reason": "r"})

    async def snapshot() -> list[Any]:
        async with mediation.runtime.engine.connect() as conn:
            out: list[Any] = []
            for table in t.READ_MODEL_TABLES:
                key = list(table.primary_key.columns)
                out.append([tuple(r) for r in await conn.execute(sa.select(table).order_by(*key))])
            return out

    before = await snapshot()
    replayed = await rebuild_read_models(mediation.runtime.engine, mediation.runtime.store)
    assert replayed > 0 and await snapshot() == before
