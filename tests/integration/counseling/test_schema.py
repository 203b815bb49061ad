"""The counseling migration creates exactly the schema tables.py describes (plus the core, the
consumer tables and the audit trail), and the read models rebuilt from the event store equal the
ones kept inline."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.counseling import tables as t
from services.counseling.projections import own_projection
from shared.audit import audit_metadata
from shared.projections import rebuild
from shared.tables import consumer_metadata, core_metadata
from tests.integration.counseling.conftest import COUNSELOR_1, STAFF, CounselingUnderTest

pytestmark = pytest.mark.integration


async def test_migrated_schema_matches_the_table_definitions(counseling: CounselingUnderTest) -> None:
    def diff(sync_conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(sync_conn)
        metadata = [core_metadata, consumer_metadata, audit_metadata, t.metadata]
        return list(compare_metadata(context, metadata))  # type: ignore[arg-type]

    async with counseling.runtime.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_rebuilt_read_models_equal_the_inline_ones(counseling: CounselingUnderTest) -> None:
    counselor = await counseling.counselor()
    done = (await counseling.book(await counseling.slot(counselor)))["appointment_id"]
    await counseling.ok("POST", f"/v1/appointments/{done}/complete", COUNSELOR_1, {"notes": "n"})
    gone = (await counseling.book(await counseling.slot(counselor)))["appointment_id"]
    await counseling.ok("POST", f"/v1/appointments/{gone}/cancel", STAFF)
    await counseling.ok("POST", f"/v1/counselors/{counselor}/deactivate", STAFF)

    async def snapshot() -> list[Any]:
        async with counseling.runtime.engine.connect() as conn:
            return [
                [tuple(r) for r in await conn.execute(sa.select(table).order_by(*table.primary_key.columns))]
                for table in t.OWN_READ_MODELS
            ]

    before = await snapshot()
    assert await rebuild(counseling.runtime.engine, counseling.runtime.store, own_projection) == 8
    assert await snapshot() == before
