"""Migration 0004 on a database that already has stations and numbered cases: every prefix in use
becomes its station's, and the first station to have used a shared one keeps it (the other's next
intake then takes a default no other station has). Found by the issue-14 review: two stations
with one prefix lost the second station's case."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from services.mediation.app import MIGRATIONS
from services.mediation.tables import cases, stations
from shared.migrations import alembic_config

pytestmark = pytest.mark.integration


async def _upgrade(database_url: str, revision: str) -> None:
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:

            def run(sync_conn: sa.engine.Connection) -> None:
                cfg = alembic_config(MIGRATIONS, database_url)
                cfg.attributes["connection"] = sync_conn
                command.upgrade(cfg, revision)

            await conn.run_sync(run)
    finally:
        await engine.dispose()


async def test_0004_gives_every_prefix_in_use_to_its_first_station(database_url: str) -> None:
    await _upgrade(database_url, "0003")
    first, second, chosen = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(sa.insert(stations).values(union_id=chosen, case_prefix="XQ"))
            for case_number, station, received in (
                ("SY-2026-0001", first, date(2026, 3, 1)),
                ("SY-2026-0002", first, date(2026, 3, 5)),
                ("SYX-2025-0001", second, date(2025, 1, 1)),  # another prefix of the second station
                ("SY-2027-0001", second, date(2027, 1, 2)),  # the second's later number under SY
                ("XQ-2026-0001", chosen, date(2026, 4, 1)),
            ):
                await conn.execute(
                    sa.insert(cases).values(
                        case_id=uuid.uuid4(),
                        case_number=case_number,
                        station_union_id=station,
                        party="worker",
                        category="wages",
                        learned_on=received,
                        received_on=received,
                        mediation_deadline=received,
                        arbitration_limit=received,
                        status="open",
                        tier="street",
                        handling_union_id=station,
                        handled_by=[station],
                        version=1,
                    )
                )
        await _upgrade(database_url, "head")
        async with engine.connect() as conn:
            owners = dict((await conn.execute(sa.text("SELECT prefix, union_id FROM case_prefixes"))).all())
        assert owners == {"SY": first, "SYX": second, "XQ": chosen}
    finally:
        await engine.dispose()
