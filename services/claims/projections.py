"""Read models of the claims service.

- ``apply_own``: the claims and decisions tables, projected inline from this service's own
  events (and rebuildable from its event store with ``shared.projections.rebuild``);
- ``coverage_*``: the coverage model, fed only by ``membership.events`` (rebuilt by replaying
  that topic into a fresh consumer).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.claims import tables as t
from services.claims.domain import CardSpell, EnrollmentFact, MemberCoverage
from shared import driver
from shared.contracts import claims as c
from shared.contracts import membership as m
from shared.contracts.claims import registry as claims_registry
from shared.contracts.plans import Plan
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.projections import Projection
from shared.unit_of_work import BatchedProjection

#: Statements every report runs are built once; SQLAlchemy then reuses their compiled form
#: instead of building and hashing a fresh statement per call (a fifth of the consumer's CPU).
#: Every filed claim and every decision writes these: sent to asyncpg directly (shared/driver.py).
#: A filed claim's row and, for a claim filed from a report, the report's decision: one round
#: trip (a report's second claim finds its decision there and adds nothing).
_CLAIM_INSERT = """
    WITH claim AS (
        INSERT INTO claims (claim_id, member_id, report_id, plan_code, benefit, enrollment_id, status,
                            required_documents, missing_documents, incident_on, filed_on, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, 'filed', $7::jsonb, $7::jsonb, $8, $9, $10)
        ON CONFLICT DO NOTHING
    )
    INSERT INTO report_decisions (report_id, member_id, reasons, decided_at)
    SELECT $3, $2, '[]'::jsonb, $10 WHERE $3::uuid IS NOT NULL
    ON CONFLICT DO NOTHING
"""
_DECISION_INSERT = """
    INSERT INTO report_decisions (report_id, member_id, reasons, decided_at)
    VALUES ($1, $2, $3::jsonb, $4) ON CONFLICT DO NOTHING
"""
# The reads every report makes go to asyncpg directly (shared/driver.py), in the reaction's
# transaction: a report pays each one, so SQLAlchemy's tenth of a millisecond per statement counts.
_DECIDED = "SELECT 1 FROM report_decisions WHERE report_id = $1"
_PLAN_VERSIONS = "SELECT code, version FROM plans"
_SEEN_VERSION = "SELECT seen_version FROM coverage_members WHERE member_id = $1"
#: The member's whole coverage in one round trip (its cards and enrollments as arrays of rows).
_COVERAGE_COLUMNS = """
           m.joined_on, m.left_on, m.left_version,
           ARRAY(SELECT ROW(c.card_last4, c.issued_on, c.cancelled_on, c.issued_version,
                            c.cancelled_version)
                 FROM coverage_cards c WHERE c.member_id = m.member_id ORDER BY c.id) AS cards,
           ARRAY(SELECT ROW(e.enrollment_id, e.plan_code, e.shares, e.starts_on, e.ends_on,
                            e.cancelled_on, e.recorded_on, e.recorded_version, e.cancelled_version)
                 FROM coverage_enrollments e WHERE e.member_id = m.member_id
                 ORDER BY e.enrollment_id) AS enrollments
"""
# Both built from the constant above only (no value is ever formatted into SQL).
_COVERAGE = f"SELECT {_COVERAGE_COLUMNS} FROM coverage_members m WHERE m.member_id = $1"  # noqa: S608
#: What a report's reaction needs, in one round trip: how far the member's stream is applied,
#: whether the report is decided already, and the coverage (NULLs when the member is unknown).
_REPORT_FACTS = f"""
    SELECT coalesce(m.seen_version, 0) AS seen_version,
           EXISTS (SELECT 1 FROM report_decisions WHERE report_id = $2) AS decided,
           {_COVERAGE_COLUMNS}
    FROM (SELECT $1::uuid AS member_id) wanted
    LEFT JOIN coverage_members m ON m.member_id = wanted.member_id
"""  # noqa: S608

# --- own events ---------------------------------------------------------------------------------


OwnProjector = Callable[[AsyncConnection, datetime, Any], Awaitable[None]]
#: The claims and decisions tables, from this service's own events.
own_projectors: HandlerTable[OwnProjector] = HandlerTable("claims.read-models")


async def apply_own(conn: AsyncConnection, envelope: EventEnvelope) -> None:
    if envelope.event_type not in claims_registry:
        return
    e = claims_registry.decode(envelope.event_type, envelope.schema_version, envelope.data)
    project = own_projectors.handler(type(e))
    if project is not None:
        await project(conn, envelope.occurred_at, e)


async def apply_own_many(conn: AsyncConnection, envelopes: Sequence[EventEnvelope]) -> None:
    """``apply_own`` for one append's events: a run of ``ClaimFiled`` (a report's claims) is
    written in one round trip; anything else goes through ``apply_own``, in order."""
    filed: list[tuple[Any, ...]] = []
    for envelope in envelopes:
        if envelope.event_type == c.ClaimFiled.event_type:
            e = claims_registry.decode(envelope.event_type, envelope.schema_version, envelope.data)
            assert isinstance(e, c.ClaimFiled)
            filed.append(_claim_row(envelope.occurred_at, e))
            continue
        await driver.executemany(conn, _CLAIM_INSERT, filed)
        filed = []
        await apply_own(conn, envelope)
    await driver.executemany(conn, _CLAIM_INSERT, filed)


def _claim_row(at: datetime, e: c.ClaimFiled) -> tuple[Any, ...]:
    documents = json.dumps(list(e.required_documents))
    return (
        e.claim_id,
        e.member_id,
        e.report_id,
        e.plan_code,
        e.benefit.value,
        e.enrollment_id,
        documents,
        e.incident_on,
        e.filed_on,
        at,
    )


@own_projectors.on(c.ClaimFiled)
async def _claim_filed(conn: AsyncConnection, at: datetime, e: c.ClaimFiled) -> None:
    await driver.execute(conn, _CLAIM_INSERT, *_claim_row(at, e))


@own_projectors.on(c.ClaimDocumentsReceived)
async def _documents_received(conn: AsyncConnection, at: datetime, e: c.ClaimDocumentsReceived) -> None:
    received = (
        await conn.execute(sa.select(t.claims.c.received_documents).where(t.claims.c.claim_id == e.claim_id))
    ).scalar_one()
    await _update(
        conn,
        at,
        e.claim_id,
        status="documents_complete" if e.complete else "documents_partial",
        received_documents=sorted(set(received) | set(e.documents)),
        missing_documents=e.missing,
    )


@own_projectors.on(c.ClaimApproved)
async def _approved(conn: AsyncConnection, at: datetime, e: c.ClaimApproved) -> None:
    await _update(conn, at, e.claim_id, status="approved", approved_amount=e.amount)


@own_projectors.on(c.ClaimRejected)
async def _rejected(conn: AsyncConnection, at: datetime, e: c.ClaimRejected) -> None:
    await _update(conn, at, e.claim_id, status="rejected", rejection_reason=e.reason_code)


@own_projectors.on(c.ClaimPaid)
async def _paid(conn: AsyncConnection, at: datetime, e: c.ClaimPaid) -> None:
    await _update(conn, at, e.claim_id, status="paid", paid_amount=e.amount)


@own_projectors.on(c.NoCoverageFound)
async def _no_coverage(conn: AsyncConnection, at: datetime, e: c.NoCoverageFound) -> None:
    await _decided(conn, e.report_id, e.member_id, e.reasons, at)


async def _update(conn: AsyncConnection, at: datetime, claim_id: uuid.UUID, **values: object) -> None:
    await conn.execute(
        sa.update(t.claims).where(t.claims.c.claim_id == claim_id).values(updated_at=at, **values)
    )


async def _decided(
    conn: AsyncConnection, report_id: uuid.UUID, member_id: uuid.UUID, reasons: list[str], at: datetime
) -> None:
    await driver.execute(conn, _DECISION_INSERT, report_id, member_id, json.dumps(list(reasons)), at)


#: What the unit of work runs on every append, and a rebuild replays (fewer round trips).
inline_projection = BatchedProjection(apply_own, apply_own_many)
own_projection = Projection("claims", [t.claims, t.report_decisions], inline_projection)

# --- coverage, from membership events ----------------------------------------------------------


CoverageProjector = Callable[[AsyncConnection, Any, int], Awaitable[None]]
#: The coverage model, from membership events (``version``: the event's version in its stream).
coverage_projectors: HandlerTable[CoverageProjector] = HandlerTable("claims.coverage-model")
#: Coverage needs no union, no transfer (claims do not depend on which union) and no report
#: (reports are decided by the reaction, not folded into coverage).
coverage_projectors.ignore(m.UnionRegistered, m.MemberTransferred, m.InjuryReported, m.MemberPhoneChanged)


async def apply_membership_event(conn: AsyncConnection, e: DomainEvent, version: int) -> None:
    """Fold one (decoded) membership event, ``version`` of its stream, into the coverage model;
    the consumer makes it once-only and in stream order."""
    project = coverage_projectors.handler(type(e))
    if project is not None:
        await project(conn, e, version)


@coverage_projectors.on(m.MemberJoined)
async def _member_joined(conn: AsyncConnection, e: m.MemberJoined, version: int) -> None:
    stmt = insert(t.coverage_members).values(member_id=e.member_id, joined_on=e.joined_on)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[t.coverage_members.c.member_id],
            set_={"joined_on": stmt.excluded.joined_on},
        )
    )


@coverage_projectors.on(m.MemberLeft)
async def _member_left(conn: AsyncConnection, e: m.MemberLeft, version: int) -> None:
    await _member(conn, e.member_id, left_on=e.left_on, left_version=version)


@coverage_projectors.on(m.CardIssued)
async def _card_issued(conn: AsyncConnection, e: m.CardIssued, version: int) -> None:
    await conn.execute(
        sa.insert(t.coverage_cards).values(
            member_id=e.member_id, card_last4=e.card_last4, issued_on=e.issued_on, issued_version=version
        )
    )


@coverage_projectors.on(m.CardCancelled)
async def _card_cancelled(conn: AsyncConnection, e: m.CardCancelled, version: int) -> None:
    open_card = (
        sa.select(t.coverage_cards.c.id)
        .where(
            t.coverage_cards.c.member_id == e.member_id,
            t.coverage_cards.c.card_last4 == e.card_last4,
            t.coverage_cards.c.cancelled_on.is_(None),
        )
        .order_by(t.coverage_cards.c.id.desc())
        .limit(1)
        .scalar_subquery()
    )
    await conn.execute(
        sa.update(t.coverage_cards)
        .where(t.coverage_cards.c.id == open_card)
        .values(cancelled_on=e.cancelled_on, cancelled_version=version)
    )


@coverage_projectors.on(m.PlanEnrolled)
async def _plan_enrolled(conn: AsyncConnection, e: m.PlanEnrolled, version: int) -> None:
    await conn.execute(
        insert(t.coverage_enrollments)
        .values(
            enrollment_id=e.enrollment_id,
            member_id=e.member_id,
            plan_code=e.plan_code,
            shares=e.shares,
            starts_on=e.coverage_starts_on,
            ends_on=e.coverage_ends_on,
            recorded_on=e.recorded_on,
            recorded_version=version,
        )
        .on_conflict_do_nothing()
    )


@coverage_projectors.on(m.EnrollmentCancelled)
async def _enrollment_cancelled(conn: AsyncConnection, e: m.EnrollmentCancelled, version: int) -> None:
    await conn.execute(
        sa.update(t.coverage_enrollments)
        .where(t.coverage_enrollments.c.enrollment_id == e.enrollment_id)
        .values(cancelled_on=e.cancelled_on, cancelled_version=version)
    )


@coverage_projectors.on(m.PlanDefined)
async def _plan_defined(conn: AsyncConnection, e: m.PlanDefined, version: int) -> None:
    plan = Plan.model_validate(e.model_dump())
    stmt = insert(t.plans).values(code=plan.code, body=plan.model_dump(mode="json"), version=version)
    await conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[t.plans.c.code],
            set_={"body": stmt.excluded.body, "version": stmt.excluded.version},
        )
    )


async def _member(conn: AsyncConnection, member_id: uuid.UUID, **values: object) -> None:
    stmt = insert(t.coverage_members).values(member_id=member_id, **values)
    await conn.execute(
        stmt.on_conflict_do_update(index_elements=[t.coverage_members.c.member_id], set_=values)
    )


async def note_member_version(conn: AsyncConnection, member_id: uuid.UUID, version: int) -> int:
    """Record that the member's stream has been applied up to ``version``; return what is seen."""
    stmt = insert(t.coverage_members).values(member_id=member_id, seen_version=version)
    upsert = stmt.on_conflict_do_update(
        index_elements=[t.coverage_members.c.member_id],
        set_={
            "seen_version": sa.func.greatest(t.coverage_members.c.seen_version, stmt.excluded.seen_version)
        },
    ).returning(t.coverage_members.c.seen_version)
    return int((await conn.execute(upsert)).scalar_one())


async def plan_versions(conn: AsyncConnection) -> dict[str, int]:
    """How far this service has applied each plan's edits (0: the seeded default)."""
    return {code: int(version) for code, version in await driver.fetch(conn, _PLAN_VERSIONS)}


async def report_decided(conn: AsyncConnection, report_id: uuid.UUID) -> bool:
    """Whether the report already has its decision (claims opened, or no coverage)."""
    return bool(await driver.fetch(conn, _DECIDED, report_id))


async def seen_version(conn: AsyncConnection, member_id: uuid.UUID) -> int:
    rows = await driver.fetch(conn, _SEEN_VERSION, member_id)
    return int(rows[0][0] or 0) if rows else 0


@dataclass(frozen=True)
class ReportFacts:
    """What ``report_facts`` read for one report."""

    seen_version: int
    decided: bool
    coverage: MemberCoverage | None


async def report_facts(conn: AsyncConnection, member_id: uuid.UUID, report_id: uuid.UUID) -> ReportFacts:
    """``seen_version``, ``report_decided`` and ``load_coverage`` of a report, in one statement."""
    [row] = await driver.fetch(conn, _REPORT_FACTS, member_id, report_id)
    return ReportFacts(int(row["seen_version"]), bool(row["decided"]), _coverage(member_id, row))


async def load_coverage(conn: AsyncConnection, member_id: uuid.UUID) -> MemberCoverage | None:
    rows = await driver.fetch(conn, _COVERAGE, member_id)
    return _coverage(member_id, rows[0]) if rows else None


def _coverage(member_id: uuid.UUID, member: Any) -> MemberCoverage | None:
    if member["joined_on"] is None:
        return None
    return MemberCoverage(
        member_id=member_id,
        joined_on=member["joined_on"],
        left_on=member["left_on"],
        left_version=member["left_version"],
        cards=tuple(CardSpell(*card) for card in member["cards"]),
        enrollments=tuple(EnrollmentFact(*enrollment) for enrollment in member["enrollments"]),
    )


async def load_plans(conn: AsyncConnection) -> dict[str, Plan]:
    rows = await conn.execute(sa.select(t.plans.c.body))
    return {p.code: p for p in (Plan.model_validate(r[0]) for r in rows)}
