"""membership's project_claim_events and claims' apply_own_many against their one-by-one
definitions, on odd inputs; and membership's claims consumer with runs vs. without. Real PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.claims import tables as ct
from services.claims.projections import apply_own, inline_projection
from services.membership import tables as mt
from services.membership.handlers import claim_reactions
from services.membership.projections import project_claim_event, project_claim_events
from shared import tracing
from shared.contracts import claims as cc
from shared.envelope import EventEnvelope, utcnow
from shared.events import DomainEvent
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer, Outcome

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(core_engine: AsyncEngine) -> AsyncEngine:
    async with core_engine.begin() as conn:
        await conn.run_sync(lambda c: mt.metadata.create_all(c, tables=[mt.member_claims, mt.claim_events]))
        await conn.run_sync(lambda c: ct.metadata.create_all(c, tables=[ct.claims, ct.report_decisions]))
    return core_engine


def env(event: DomainEvent, stream: uuid.UUID, version: int) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        event_type=event.event_type,
        schema_version=event.schema_version,
        aggregate_type="Claim",
        aggregate_id=str(stream),
        aggregate_version=version,
        occurred_at=utcnow(),
        producer="claims",
        correlation_id=uuid.uuid4(),
        data=event.model_dump(mode="json"),
    )


M = uuid.uuid4()


def filed(
    claim: uuid.UUID, report: uuid.UUID | None, benefit: str = "paid", docs: list[str] | None = None
) -> cc.ClaimFiled:
    return cc.ClaimFiled(
        claim_id=claim,
        member_id=M,
        report_id=report,
        plan_code="card_non_work_accident" if benefit == "card" else "accident_injury",
        benefit=benefit,
        enrollment_id=None if benefit == "card" else uuid.uuid4(),
        required_documents=docs or ["diagnosis"],
        incident_on=date(2016, 8, 1),
        filed_on=date(2016, 8, 10),
    )


def odd_batch() -> list[EventEnvelope]:
    c1, c2, c3, r = uuid.uuid4(), uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    f1 = filed(c1, r, "card")
    return [
        env(filed(c3, None, docs=["a", "b"]), c3, 1),  # illness claim, no report
        env(f1, c1, 1),
        env(f1, c1, 1),  # the same ClaimFiled again under another event id
        env(filed(c1, r, "paid"), c1, 2),  # the same claim filed again (other content)
        env(cc.NoCoverageFound(report_id=r, member_id=M, reasons=["x"]), r, 1),
        env(filed(c2, r), c2, 1),
        env(
            cc.ClaimDocumentsReceived(claim_id=c2, documents=["diagnosis"], complete=True, missing=[]), c2, 2
        ),
        env(filed(uuid.uuid4(), r), uuid.uuid4(), 1),
        env(cc.ClaimApproved(claim_id=c2, amount=Decimal("3.50"), approved_on=date(2016, 9, 1)), c2, 3),
    ]


async def snapshot(conn: AsyncConnection, tables: list[sa.Table]) -> list[list[tuple[object, ...]]]:
    out = []
    for table in tables:
        cols = [c for c in table.c]
        out.append(sorted((tuple(r) for r in (await conn.execute(sa.select(*cols))).all()), key=repr))
    return out


async def test_membership_many_equals_one_on_odd_input(engine: AsyncEngine) -> None:
    batch = odd_batch()
    seen = []
    for together in (False, True):
        async with engine.connect() as conn, conn.begin() as tx:
            if together:
                await project_claim_events(conn, batch)
            else:
                for e in batch:
                    await project_claim_event(conn, e)
            seen.append(await snapshot(conn, [mt.member_claims, mt.claim_events]))
            await tx.rollback()
    assert seen[0] == seen[1]
    assert len(seen[0][1]) == len(batch)


async def test_claims_apply_own_many_equals_apply_own_on_odd_input(engine: AsyncEngine) -> None:
    batch = odd_batch()
    seen = []
    for together in (False, True):
        async with engine.connect() as conn, conn.begin() as tx:
            if together:
                await inline_projection.many(conn, batch)
            else:
                for e in batch:
                    await apply_own(conn, e)
            seen.append(await snapshot(conn, [ct.claims, ct.report_decisions]))
            await tx.rollback()
    assert seen[0] == seen[1]


async def test_membership_consumer_with_runs_equals_without(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real claim_reactions table through InboxConsumer: with runs and (tracing on) without."""
    base = odd_batch()
    # consecutive per stream as the consumer wants; the duplicate of c1 v1 stays a duplicate
    batch = base
    import services.membership.handlers as handlers

    calls: list[int] = []
    real = handlers.project_claim_events

    async def counting(conn: AsyncConnection, envs: list[EventEnvelope]) -> None:
        calls.append(len(envs))
        await real(conn, envs)

    monkeypatch.setattr(handlers, "project_claim_events", counting)
    seen = []
    for runs in (True, False):
        monkeypatch.setattr(tracing, "enabled", lambda runs=runs: not runs)
        consumer = InboxConsumer("claims", engine, EventStore("membership", {}), claim_reactions)
        result = await consumer.apply(batch)
        async with engine.connect() as conn:
            seen.append((result.outcomes, await snapshot(conn, [mt.member_claims, mt.claim_events])))
        async with engine.begin() as conn:
            for tbl in ("member_claims", "claim_events", "inbox", "consumer_streams", "consumer_parked"):
                await conn.execute(sa.text(f"DELETE FROM {tbl}"))
    assert seen[0] == seen[1]
    assert Outcome.DUPLICATE in seen[0][0]
    assert calls == [3]  # the runs path was really taken
