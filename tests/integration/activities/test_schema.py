"""The migrations create exactly tables.py's schema; a rebuilt read model equals the inline one."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.activities import tables as t
from services.activities.projections import own_projection
from shared.projections import rebuild
from shared.tables import consumer_metadata, core_metadata
from tests.integration.activities.conftest import MOTHERS_DAY, STAFF, ActivitiesUnderTest

pytestmark = pytest.mark.integration


async def test_migrated_schema_matches_the_table_definitions(activities: ActivitiesUnderTest) -> None:
    def diff(sync_conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(sync_conn)
        return list(compare_metadata(context, [core_metadata, consumer_metadata, t.metadata]))  # type: ignore[arg-type]

    async with activities.runtime.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_rebuilt_read_models_equal_the_inline_ones(activities: ActivitiesUnderTest) -> None:
    a = activities
    activity_id = await a.schedule(capacity=2)
    members = await a.members(4)
    ids = [(await a.register(activity_id, {"member_id": str(m)})).json()["registration_id"] for m in members]
    base = f"/v1/activities/{activity_id}"
    assert (await a.http.post(f"{base}/registrations/{ids[0]}/cancel", headers=STAFF)).status_code == 200
    volunteer = {"member_id": str(members[3]), "role": "host"}
    assert (await a.http.post(f"{base}/volunteers", json=volunteer, headers=STAFF)).status_code == 201
    r = await a.http.post(f"{base}/volunteers", json=volunteer, headers=STAFF)
    assert (r.status_code, r.json()["code"]) == (409, "already_volunteering")
    helper = {"member_id": str(members[2]), "role": "volunteer"}
    assert (await a.http.post(f"{base}/volunteers", json=helper, headers=STAFF)).status_code == 201
    r = await a.http.post(f"{base}/volunteers/{members[2]}/release", headers=STAFF)
    assert r.status_code == 200
    a.clock.now = MOTHERS_DAY
    assert (await a.http.post(f"{base}/registrations/{ids[1]}/check-in", headers=STAFF)).status_code == 200
    body = {"rating": 4, "comment": "good"}
    assert (
        await a.http.post(f"{base}/registrations/{ids[1]}/feedback", json=body, headers=STAFF)
    ).status_code == 201
    r = await a.http.post(
        "/v1/interests", json={"member_id": str(members[0]), "kind": "lecture"}, headers=STAFF
    )
    assert r.status_code == 201
    assert (await a.get(base))["volunteers"] == [{"member_id": str(members[3]), "role": "host"}]

    async def snapshot() -> list[list[tuple[Any, ...]]]:
        async with a.runtime.engine.connect() as conn:
            out = []
            for table in t.READ_MODEL_TABLES:
                key = list(table.primary_key.columns)
                out.append([tuple(r) for r in await conn.execute(sa.select(table).order_by(*key))])
            return out

    before = await snapshot()
    async with a.runtime.engine.connect() as conn:
        stored = await conn.scalar(sa.text("SELECT count(*) FROM events"))
    replayed = await rebuild(a.runtime.engine, a.runtime.store, own_projection)
    assert replayed == stored
    after = await snapshot()
    # updated_at is the event's time, so even that column is reproduced.
    assert after == before
