"""Read models of the claims service.

- ``apply_own``: the claims and decisions tables, projected inline from this service's own
  events (and rebuildable from its event store with ``shared.projections.rebuild``);
- ``coverage_*``: the coverage model, fed only by ``membership.events`` (rebuilt by replaying
  that topic into a fresh consumer).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.claims import tables as t
from services.claims.domain import CardSpell, EnrollmentFact, MemberCoverage
from shared.contracts import claims as c
from shared.contracts import membership as m
from shared.contracts.claims import registry as claims_registry
from shared.contracts.plans import Plan
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.projections import Projection

#: Statements every report runs are built once; SQLAlchemy then reuses their compiled form
#: instead of building and hashing a fresh statement per call (a fifth of the consumer's CPU).
_CLAIM_INSERT = insert(t.claims).on_conflict_do_nothing()
_DECISION_INSERT = insert(t.report_decisions).on_conflict_do_nothing()
_DECIDED = sa.select(t.report_decisions.c.report_id).where(
    t.report_decisions.c.report_id == sa.bindparam("report_id")
)
_SEEN_VERSION = sa.select(t.coverage_members.c.seen_version).where(
    t.coverage_members.c.member_id == sa.bindparam("member_id")
)
_COVERAGE_MEMBER = sa.select(t.coverage_members).where(
    t.coverage_members.c.member_id == sa.bindparam("member_id")
)
_COVERAGE_CARDS = (
    sa.select(t.coverage_cards)
    .where(t.coverage_cards.c.member_id == sa.bindparam("member_id"))
    .order_by(t.coverage_cards.c.id)
)
_COVERAGE_ENROLLMENTS = sa.select(t.coverage_enrollments).where(
    t.coverage_enrollments.c.member_id == sa.bindparam("member_id")
)

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


@own_projectors.on(c.ClaimFiled)
async def _claim_filed(conn: AsyncConnection, at: datetime, e: c.ClaimFiled) -> None:
    await conn.execute(
        _CLAIM_INSERT,
        {
            "claim_id": e.claim_id,
            "member_id": e.member_id,
            "report_id": e.report_id,
            "plan_code": e.plan_code,
            "benefit": e.benefit.value,
            "enrollment_id": e.enrollment_id,
            "status": "filed",
            "required_documents": e.required_documents,
            "missing_documents": e.required_documents,
            "incident_on": e.incident_on,
            "filed_on": e.filed_on,
            "updated_at": at,
        },
    )
    if e.report_id is not None:
        await _decided(conn, e.report_id, e.member_id, [], at)


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
    await conn.execute(
        _DECISION_INSERT,
        {"report_id": report_id, "member_id": member_id, "reasons": reasons, "decided_at": at},
    )


own_projection = Projection("claims", [t.claims, t.report_decisions], apply_own)

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
    rows = await conn.execute(sa.select(t.plans.c.code, t.plans.c.version))
    return {code: int(version) for code, version in rows}


async def report_decided(conn: AsyncConnection, report_id: uuid.UUID) -> bool:
    """Whether the report already has its decision (claims opened, or no coverage)."""
    found = await conn.scalar(_DECIDED, {"report_id": report_id})
    return found is not None


async def seen_version(conn: AsyncConnection, member_id: uuid.UUID) -> int:
    value = await conn.scalar(_SEEN_VERSION, {"member_id": member_id})
    return int(value or 0)


async def load_coverage(conn: AsyncConnection, member_id: uuid.UUID) -> MemberCoverage | None:
    args = {"member_id": member_id}
    member = (await conn.execute(_COVERAGE_MEMBER, args)).mappings().first()
    if member is None or member["joined_on"] is None:
        return None
    cards = (await conn.execute(_COVERAGE_CARDS, args)).mappings()
    enrollments = (await conn.execute(_COVERAGE_ENROLLMENTS, args)).mappings()
    return MemberCoverage(
        member_id=member_id,
        joined_on=member["joined_on"],
        left_on=member["left_on"],
        left_version=member["left_version"],
        cards=tuple(
            CardSpell(
                c["card_last4"],
                c["issued_on"],
                c["cancelled_on"],
                c["issued_version"],
                c["cancelled_version"],
            )
            for c in cards
        ),
        enrollments=tuple(
            EnrollmentFact(
                e["enrollment_id"],
                e["plan_code"],
                e["shares"],
                e["starts_on"],
                e["ends_on"],
                e["cancelled_on"],
                e["recorded_on"],
                e["recorded_version"],
                e["cancelled_version"],
            )
            for e in enrollments
        ),
    )


async def load_plans(conn: AsyncConnection) -> dict[str, Plan]:
    rows = await conn.execute(sa.select(t.plans.c.body))
    return {p.code: p for p in (Plan.model_validate(r[0]) for r in rows)}
