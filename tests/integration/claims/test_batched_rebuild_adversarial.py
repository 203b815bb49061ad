"""Adversarial review of 1c08e74 + 67f842c: claims' own projection as a BatchedProjection, a
rebuild replaying each chunk through ``apply_own_many``, and ``driver.executemany``.

The reference is always ``apply_own`` applied event by event (the definition)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError

from services.claims import tables as t
from services.claims.app import MIGRATIONS, ClaimsSettings, build_runtime
from services.claims.projections import apply_own, apply_own_many, inline_projection, own_projection
from shared import driver
from shared.clock import fixed
from shared.contracts import claims as c
from shared.contracts.common import Benefit
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.migrations import upgrade_to_head
from shared.projections import Projection, rebuild
from shared.runtime import ServiceRuntime
from shared.unit_of_work import TransactionAborted, UnitOfWork
from tests.integration.claims.conftest import TODAY

pytestmark = pytest.mark.integration

AUG_2 = date(2016, 8, 2)
T0 = datetime(2016, 8, 9, 8, 0, tzinfo=UTC)


@pytest.fixture
async def claims_db(database_url: str) -> Any:
    await upgrade_to_head(MIGRATIONS, database_url)
    runtime = build_runtime(ClaimsSettings(CLAIMS_DATABASE_URL=database_url), clock=fixed(TODAY))
    try:
        yield runtime
    finally:
        await runtime.engine.dispose()


class Story:
    """Envelopes with consecutive versions per stream and strictly increasing occurred_at."""

    def __init__(self) -> None:
        self.versions: dict[str, int] = {}
        self.tick = 0
        self.envs: list[EventEnvelope] = []

    def raw(self, stream: str, event_type: str, data: dict[str, Any], version: int = 1) -> EventEnvelope:
        self.versions[stream] = self.versions.get(stream, 0) + 1
        self.tick += 1
        env = EventEnvelope(
            event_id=uuid.uuid4(),
            event_type=event_type,
            schema_version=version,
            aggregate_type="Claim",
            aggregate_id=stream,
            aggregate_version=self.versions[stream],
            occurred_at=T0 + timedelta(seconds=self.tick),
            # A type no registry of this release knows stands for a later release's event: the
            # session's contract check (tests/contract_check.py) holds this release's producers
            # to the published schemas, so it is stored under another producer name.
            producer="claims" if event_type in c.registry else "claims-later-release",
            correlation_id=uuid.uuid4(),
            causation_id=None,
            data=data,
        )
        self.envs.append(env)
        return env

    def ev(self, stream: uuid.UUID | str, e: DomainEvent) -> EventEnvelope:
        return self.raw(str(stream), e.event_type, e.model_dump(mode="json"))

    def filed(
        self,
        report: uuid.UUID | None,
        member: uuid.UUID,
        claim: uuid.UUID | None = None,
        stream: str | None = None,
        plan: str = "accident_injury",
    ) -> uuid.UUID:
        claim = claim or uuid.uuid4()
        self.ev(
            stream or claim,
            c.ClaimFiled(
                claim_id=claim,
                member_id=member,
                report_id=report,
                plan_code=plan,
                benefit=Benefit.PAID,
                enrollment_id=None,
                required_documents=["a", "b", "c"],
                incident_on=AUG_2,
                filed_on=TODAY,
            ),
        )
        return claim


def every_kind() -> Story:
    s, a, b = Story(), uuid.uuid4(), uuid.uuid4()
    r1, r2, r3 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    k1 = s.filed(r1, a)
    s.ev(k1, c.ClaimDocumentsReceived(claim_id=k1, documents=["a"], complete=False, missing=["b", "c"]))
    k2 = s.filed(r1, a)  # the same report, a second claim
    s.raw("mystery-1", "ClaimArchived", {"claim_id": str(k1)})  # a type the registry doesn't know
    s.ev(k1, c.ClaimDocumentsReceived(claim_id=k1, documents=["b", "c"], complete=True, missing=[]))
    s.ev(k1, c.ClaimApproved(claim_id=k1, amount=Decimal("120.50"), approved_on=TODAY))
    k3 = s.filed(None, a)  # staff-filed, no report
    k4 = s.filed(None, b)
    s.ev(r2, c.NoCoverageFound(report_id=r2, member_id=b, reasons=["no_card"]))
    k5 = s.filed(r2, b)  # a claim for a report already decided "no coverage": first writer wins
    s.ev(k2, c.ClaimRejected(claim_id=k2, reason_code="late", rejected_on=TODAY))
    s.ev(
        k1,
        c.ClaimPaid(
            claim_id=k1, member_id=a, plan_code="accident_injury", amount=Decimal("120.50"), paid_on=TODAY
        ),
    )
    s.filed(r3, b)
    s.ev(r3, c.NoCoverageFound(report_id=r3, member_id=b, reasons=["late"]))  # after: no-op
    s.filed(r1, a, claim=k1, stream=f"dup-{k1}")  # the same claim filed again (another stream)
    s.raw("mystery-2", "SomethingElse", {})
    for k in (k3, k4, k5):
        s.ev(k, c.ClaimDocumentsReceived(claim_id=k, documents=["c"], complete=False, missing=["a", "b"]))
    s.ev(k4, c.ClaimApproved(claim_id=k4, amount=Decimal("9.99"), approved_on=TODAY))
    s.filed(r1, b)  # a third claim of r1, by another member: decision member stays a
    k6 = s.filed(uuid.uuid4(), a)
    s.ev(k6, c.ClaimDocumentsReceived(claim_id=k6, documents=["a", "b", "c"], complete=True, missing=[]))
    s.ev(
        k6,
        c.ClaimPaid(
            claim_id=k6, member_id=a, plan_code="accident_injury", amount=Decimal("1"), paid_on=TODAY
        ),
    )
    return s


async def dump(runtime: ServiceRuntime) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    async with runtime.engine.connect() as conn:
        claims = [
            dict(r._mapping) for r in await conn.execute(sa.select(t.claims).order_by(t.claims.c.claim_id))
        ]
        decisions = [
            dict(r._mapping)
            for r in await conn.execute(
                sa.select(t.report_decisions).order_by(t.report_decisions.c.report_id)
            )
        ]
    return claims, decisions


async def one_by_one(runtime: ServiceRuntime, envs: list[EventEnvelope]) -> None:
    async with runtime.engine.begin() as conn:
        for env in envs:
            await runtime.store.append(conn, [env])
            await apply_own(conn, env)


@pytest.mark.parametrize("batch", [1, 2, 3, 7, 1000])
async def test_rebuild_of_every_kind_interleaved_equals_the_event_by_event_model(
    claims_db: ServiceRuntime, batch: int
) -> None:
    s = every_kind()
    await one_by_one(claims_db, s.envs)
    inline = await dump(claims_db)
    assert len(inline[0]) >= 8 and len(inline[1]) >= 3
    # corrupt, then rebuild through many
    async with claims_db.engine.begin() as conn:
        await conn.execute(sa.update(t.claims).values(status="x"))
    assert await rebuild(claims_db.engine, claims_db.store, own_projection, batch=batch) == len(s.envs)
    assert await dump(claims_db) == inline
    # and the same through one only
    plain = Projection("claims", own_projection.tables, apply_own)
    await rebuild(claims_db.engine, claims_db.store, plain, batch=batch)
    assert await dump(claims_db) == inline


async def test_one_append_of_every_kind_through_the_unit_of_work_equals_event_by_event(
    claims_db: ServiceRuntime,
) -> None:
    s = every_kind()
    async with UnitOfWork(claims_db.engine, claims_db.store, projections=(inline_projection,)) as uow:
        await uow._append(s.envs)
        await uow.commit()
    batched = await dump(claims_db)
    await rebuild(claims_db.engine, claims_db.store, Projection("claims", own_projection.tables, apply_own))
    assert await dump(claims_db) == batched


@pytest.mark.parametrize("where", ["filed", "approved"])
async def test_an_error_mid_chunk_fails_the_rebuild_and_leaves_the_old_model(
    claims_db: ServiceRuntime, where: str
) -> None:
    s = every_kind()
    await one_by_one(claims_db, s.envs)
    before = await dump(claims_db)
    async with claims_db.engine.begin() as conn:
        await conn.execute(
            sa.text("""
            CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.plan_code = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$""")
        )
        await conn.execute(
            sa.text("CREATE TRIGGER boom BEFORE INSERT ON claims FOR EACH ROW EXECUTE FUNCTION boom()")
        )
    bad = Story()
    bad.tick = 1000
    m = uuid.uuid4()
    k = bad.filed(uuid.uuid4(), m)
    bad.filed(uuid.uuid4(), m)
    if where == "filed":
        bad.filed(uuid.uuid4(), m, plan="boom")  # a server error inside executemany
    else:
        bad.ev(
            k, c.ClaimApproved(claim_id=k, amount=Decimal("99999999999.00"), approved_on=TODAY)
        )  # overflow
    bad.filed(uuid.uuid4(), m)
    async with claims_db.engine.begin() as conn:
        await claims_db.store.append(conn, bad.envs)
    with pytest.raises(DBAPIError):
        await rebuild(claims_db.engine, claims_db.store, own_projection, batch=1000)
    assert await dump(claims_db) == before, "the old model stays"
    # the pool is still usable and a later rebuild (after removing the trigger) works
    async with claims_db.engine.begin() as conn:
        await conn.execute(sa.text("DROP TRIGGER boom ON claims"))
        await conn.execute(
            sa.text(
                "DELETE FROM events WHERE data->>'plan_code' = 'boom' OR (data->>'amount')::numeric > 1e9"
            )
        )
    await rebuild(claims_db.engine, claims_db.store, own_projection, batch=3)
    after = await dump(claims_db)
    assert len(after[0]) == len(before[0]) + 3


async def test_a_swallowed_server_error_in_many_is_refused_its_commit(claims_db: ServiceRuntime) -> None:
    async with claims_db.engine.begin() as conn:
        await conn.execute(
            sa.text("""
            CREATE FUNCTION boom() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN IF NEW.plan_code = 'boom' THEN RAISE EXCEPTION 'boom'; END IF; RETURN NEW; END $$""")
        )
        await conn.execute(
            sa.text("CREATE TRIGGER boom BEFORE INSERT ON claims FOR EACH ROW EXECUTE FUNCTION boom()")
        )
    s, m = Story(), uuid.uuid4()
    s.filed(uuid.uuid4(), m)
    s.filed(uuid.uuid4(), m, plan="boom")
    async with UnitOfWork(claims_db.engine, claims_db.store, projections=(inline_projection,)) as uow:
        with pytest.raises(DBAPIError):
            await uow._append(s.envs)
        assert driver.failures(uow.conn) == 1, "counted once"
        with pytest.raises(TransactionAborted):
            await uow.commit()
    assert await dump(claims_db) == ([], [])


def _row(claim: Any, report: Any = None) -> tuple[Any, ...]:
    return (claim, uuid.uuid4(), report, "accident_injury", "paid", None, "[]", AUG_2, TODAY, T0)


async def test_a_client_side_error_after_rows_were_sent_is_counted_and_undone_by_a_savepoint(
    claims_db: ServiceRuntime,
) -> None:
    from services.claims.projections import _CLAIM_INSERT

    good = [_row(uuid.uuid4(), uuid.uuid4()) for _ in range(5000)]
    rows = [*good, _row("not-a-uuid")]
    async with UnitOfWork(claims_db.engine, claims_db.store) as uow:
        await uow.conn.execute(sa.text("SELECT 1"))
        with pytest.raises(DBAPIError):
            await driver.executemany(uow.conn, _CLAIM_INSERT, rows)
        assert driver.failures(uow.conn) == 1
        # the transaction is not aborted server-side: half the call is there
        sent = await uow.conn.scalar(sa.text("SELECT count(*) FROM claims"))
        assert 0 < sent < 5000, f"asyncpg had sent {sent} good rows before the bad one"
        with pytest.raises(TransactionAborted):
            await uow.commit()
    assert await dump(claims_db) == ([], []), f"{sent} rows were in the transaction, none committed"

    async with UnitOfWork(claims_db.engine, claims_db.store) as uow:
        try:
            async with uow.conn.begin_nested():
                await driver.executemany(uow.conn, _CLAIM_INSERT, rows)
        except DBAPIError:
            pass
        assert driver.failures(uow.conn) == 0
        assert await uow.conn.scalar(sa.text("SELECT count(*) FROM claims")) == 0
        await driver.executemany(uow.conn, _CLAIM_INSERT, good[:2])
        await uow.commit()
    assert len((await dump(claims_db))[0]) == 2


async def test_many_as_the_first_statement_of_a_fresh_transaction_is_inside_it(
    claims_db: ServiceRuntime,
) -> None:
    s, m = Story(), uuid.uuid4()
    s.filed(None, m)
    s.filed(uuid.uuid4(), m)
    async with claims_db.engine.connect() as conn:
        await apply_own_many(conn, s.envs)
        await conn.rollback()
    assert await dump(claims_db) == ([], [])


async def test_null_report_first_in_a_run_then_reports(claims_db: ServiceRuntime) -> None:
    s, m, r = Story(), uuid.uuid4(), uuid.uuid4()
    s.filed(None, m)
    s.filed(None, m)
    s.filed(r, m)
    s.filed(r, uuid.uuid4())
    await one_by_one(claims_db, s.envs)
    inline = await dump(claims_db)
    for batch in (1, 2, 4):
        await rebuild(claims_db.engine, claims_db.store, own_projection, batch=batch)
        assert await dump(claims_db) == inline
    assert [d["member_id"] for d in inline[1]] == [m]


async def test_documents_for_a_claim_never_filed_mid_chunk_fails_the_rebuild_cleanly(
    claims_db: ServiceRuntime,
) -> None:
    from sqlalchemy.exc import NoResultFound

    s = every_kind()
    await one_by_one(claims_db, s.envs)
    before = await dump(claims_db)
    bad = Story()
    bad.tick = 1000
    k = bad.filed(uuid.uuid4(), uuid.uuid4())
    ghost = uuid.uuid4()
    bad.ev(ghost, c.ClaimDocumentsReceived(claim_id=ghost, documents=["a"], complete=False, missing=[]))
    bad.ev(k, c.ClaimApproved(claim_id=k, amount=Decimal("1"), approved_on=TODAY))
    async with claims_db.engine.begin() as conn:
        await claims_db.store.append(conn, bad.envs)
    for batch in (2, 1000):
        with pytest.raises(NoResultFound):
            await rebuild(claims_db.engine, claims_db.store, own_projection, batch=batch)
        assert await dump(claims_db) == before
