"""Read models: inline projections of our own events, and of the claims events we consume.

``apply`` runs inside the unit of work that appended the event (read-your-writes), and is the same
function a rebuild replays. Every write here is idempotent (insert-or-ignore, upsert, or an update
to a value the event fixes), so replaying an event twice leaves the same rows.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.membership.tables import (
    READ_MODEL_TABLES,
    cards,
    enrollments,
    member_claims,
    member_timeline,
    members,
    plans,
    unions,
)
from shared import driver
from shared.contracts import claims as claims_contract
from shared.contracts.membership import (
    CardCancelled,
    CardIssued,
    EnrollmentCancelled,
    InjuryReported,
    MemberJoined,
    MemberLeft,
    MemberPhoneChanged,
    MemberTransferred,
    PlanDefined,
    PlanEnrolled,
    UnionRegistered,
    registry,
)
from shared.contracts.plans import Plan
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.eventstore import EventStore
from shared.projections import ProgressCallback, Projection, rebuild

Projector = Callable[[AsyncConnection, EventEnvelope, Any], Awaitable[None]]

#: Our own events onto the read models. Every type of ``registry`` is handled (the test of
#: dispatch coverage says so); a member's events also go onto the timeline.
projectors: HandlerTable[Projector] = HandlerTable("membership.read-models")


async def apply(conn: AsyncConnection, env: EventEnvelope) -> None:
    """Project one of our own events (inline, and on rebuild)."""
    if env.event_type not in registry:
        return
    event = registry.decode(env.event_type, env.schema_version, env.data)
    project = projectors.handler(type(event))
    if project is not None:
        await project(conn, env, event)
    member_id = getattr(event, "member_id", None)
    if member_id is not None and type(event) not in _WRITES_OWN_TIMELINE_ROW:
        await _on_timeline(conn, env, event, member_id)


#: Statements on the hot path are built once (SQLAlchemy then reuses their compiled form).
_TIMELINE_INSERT = pg_insert(member_timeline).on_conflict_do_nothing()
#: The report's row and its timeline row in one statement (one round trip fewer on the intake
#: path, the busiest write of the system): both idempotent, as everything here.
#: Sent to asyncpg directly (shared/driver.py): every report pays it.
_REPORT_AND_TIMELINE_INSERT = """
    WITH report AS (
        INSERT INTO injury_reports (report_id, member_id, occurred_on, work_related, traffic_accident,
                                    severity, reported_on, member_version, reported_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
        ON CONFLICT DO NOTHING
    )
    INSERT INTO member_timeline (event_id, member_id, occurred_at, aggregate_type, aggregate_id,
                                 aggregate_version, event_type, data)
    VALUES ($10, $2, $9, $11, $12, $13, $14, $15::jsonb)
    ON CONFLICT DO NOTHING
"""
#: Event types whose projector writes the member's timeline row itself (see above).
_WRITES_OWN_TIMELINE_ROW: frozenset[type[DomainEvent]] = frozenset({InjuryReported})


async def _on_timeline(conn: AsyncConnection, env: EventEnvelope, event: DomainEvent, member_id: Any) -> None:
    await conn.execute(
        _TIMELINE_INSERT,
        {
            "event_id": env.event_id,
            "member_id": member_id,
            "occurred_at": env.occurred_at,
            "aggregate_type": env.aggregate_type,
            "aggregate_id": env.aggregate_id,
            "aggregate_version": env.aggregate_version,
            "event_type": env.event_type,
            "data": env.data,
        },
    )


@projectors.on(UnionRegistered)
async def _union_registered(conn: AsyncConnection, env: EventEnvelope, e: UnionRegistered) -> None:
    await conn.execute(
        pg_insert(unions)
        .values(
            union_id=e.union_id,
            name=e.name,
            level=e.level,
            parent_id=e.parent_union_id,
            registered_at=env.occurred_at,
        )
        .on_conflict_do_nothing()
    )


@projectors.on(MemberJoined)
async def _member_joined(conn: AsyncConnection, env: EventEnvelope, e: MemberJoined) -> None:
    await conn.execute(
        pg_insert(members)
        .values(
            member_id=e.member_id,
            union_id=e.union_id,
            full_name=e.full_name,
            gender=e.gender,
            birth_date=e.birth_date,
            joined_on=e.joined_on,
            employer=e.employer,
            status="active",
            version=env.aggregate_version,
            updated_at=env.occurred_at,
        )
        .on_conflict_do_nothing()
    )


async def _touch(conn: AsyncConnection, env: EventEnvelope, member_id: Any, **values: Any) -> None:
    await conn.execute(
        sa.update(members)
        .where(members.c.member_id == member_id)
        .values(version=env.aggregate_version, updated_at=env.occurred_at, **values)
    )


@projectors.on(MemberTransferred)
async def _member_transferred(conn: AsyncConnection, env: EventEnvelope, e: MemberTransferred) -> None:
    await _touch(conn, env, e.member_id, union_id=e.to_union_id)


@projectors.on(MemberLeft)
async def _member_left(conn: AsyncConnection, env: EventEnvelope, e: MemberLeft) -> None:
    await _touch(conn, env, e.member_id, status="left", left_on=e.left_on, leave_reason=e.reason)


@projectors.on(MemberPhoneChanged)
async def _member_phone_changed(conn: AsyncConnection, env: EventEnvelope, e: MemberPhoneChanged) -> None:
    await _touch(conn, env, e.member_id)


@projectors.on(CardIssued)
async def _card_issued(conn: AsyncConnection, env: EventEnvelope, e: CardIssued) -> None:
    await conn.execute(
        pg_insert(cards)
        .values(
            member_id=e.member_id,
            seq=env.aggregate_version,
            card_last4=e.card_last4,
            issued_on=e.issued_on,
            status="active",
        )
        .on_conflict_do_nothing()
    )
    await _touch(conn, env, e.member_id)


@projectors.on(CardCancelled)
async def _card_cancelled(conn: AsyncConnection, env: EventEnvelope, e: CardCancelled) -> None:
    await conn.execute(
        sa.update(cards)
        .where(cards.c.member_id == e.member_id, cards.c.status == "active")
        .values(status="cancelled", cancelled_on=e.cancelled_on, cancel_reason=e.reason)
    )
    await _touch(conn, env, e.member_id)


@projectors.on(PlanEnrolled)
async def _plan_enrolled(conn: AsyncConnection, env: EventEnvelope, e: PlanEnrolled) -> None:
    union_now = sa.select(members.c.union_id).where(members.c.member_id == e.member_id).scalar_subquery()
    await conn.execute(
        pg_insert(enrollments)
        .values(
            enrollment_id=e.enrollment_id,
            member_id=e.member_id,
            union_id=union_now,
            plan_code=e.plan_code,
            shares=e.shares,
            price_level=e.price_level,
            starts_on=e.coverage_starts_on,
            ends_on=e.coverage_ends_on,
            status="active",
            enrolled_at=env.occurred_at,
        )
        .on_conflict_do_nothing()
    )
    await _touch(conn, env, e.member_id)


@projectors.on(EnrollmentCancelled)
async def _enrollment_cancelled(conn: AsyncConnection, env: EventEnvelope, e: EnrollmentCancelled) -> None:
    await conn.execute(
        sa.update(enrollments)
        .where(enrollments.c.enrollment_id == e.enrollment_id)
        .values(status="cancelled", cancelled_on=e.cancelled_on, cancel_reason=e.reason)
    )
    await _touch(conn, env, e.member_id)


@projectors.on(InjuryReported)
async def _injury_reported(conn: AsyncConnection, env: EventEnvelope, e: InjuryReported) -> None:
    await driver.execute(
        conn,
        _REPORT_AND_TIMELINE_INSERT,
        e.report_id,
        e.member_id,
        e.occurred_on,
        e.work_related,
        e.traffic_accident,
        e.severity,
        e.reported_on,
        e.member_version,
        env.occurred_at,
        # the timeline row, as _on_timeline writes it for every other member event
        env.event_id,
        env.aggregate_type,
        env.aggregate_id,
        env.aggregate_version,
        env.event_type,
        json.dumps(env.data, separators=(",", ":")),
    )


@projectors.on(PlanDefined)
async def _plan_defined(conn: AsyncConnection, env: EventEnvelope, e: PlanDefined) -> None:
    plan = Plan.model_validate(e.model_dump())
    await upsert_plan(conn, plan, updated_at=env.occurred_at, version=env.aggregate_version)


async def upsert_plan(
    conn: AsyncConnection, plan: Plan, *, updated_at: Any = None, version: int | None = None
) -> None:
    """A new plan goes to the end of the catalogue; an edited one keeps its place."""
    next_position = sa.select(sa.func.coalesce(sa.func.max(plans.c.position), 0) + 1).scalar_subquery()
    values: dict[str, Any] = {
        "name": plan.name,
        "benefit": plan.benefit,
        "active": plan.active,
        "definition": plan.model_dump(mode="json"),
        "updated_at": updated_at if updated_at is not None else sa.func.now(),
    }
    if version is not None:
        values["version"] = version
    stmt = pg_insert(plans).values(code=plan.code, position=next_position, **values)
    await conn.execute(stmt.on_conflict_do_update(index_elements=[plans.c.code], set_=values))


#: The operator's handle: ``rebuild(engine, store, READ_MODELS)`` (the plans table is upserted,
#: not emptied, so its seeded rows survive; the vault and the claims read models are untouched).
READ_MODELS = Projection("membership-read-models", READ_MODEL_TABLES, apply)


async def rebuild_read_models(
    engine: AsyncEngine, store: EventStore, *, progress: ProgressCallback | None = None
) -> int:
    return await rebuild(engine, store, READ_MODELS, progress=progress)


# --- claims.events -> the member's claims and timeline ----------------------------------------

#: What a claims event changes on the member's claim row; each returns the row's (member_id,
#: report_id) when the event does not carry them itself. Every event also lands on the timeline.
ClaimProjector = Callable[[AsyncConnection, EventEnvelope, Any], Awaitable[tuple[Any, Any] | None]]
claim_projectors: HandlerTable[ClaimProjector] = HandlerTable("membership.member-claims")


async def project_claim_event(conn: AsyncConnection, env: EventEnvelope) -> None:
    """Put a claims-service event on the member's record. Unknown types are ignored; a newer
    schema's extra fields are tolerated (the payload models ignore them)."""
    if env.event_type not in claims_contract.registry:
        return
    event = claims_contract.registry.decode(env.event_type, env.schema_version, env.data)
    member_id: Any = getattr(event, "member_id", None)
    claim_id: Any = getattr(event, "claim_id", None)
    report_id: Any = getattr(event, "report_id", None)
    project = claim_projectors.handler(type(event))
    found = await project(conn, env, event) if project is not None else None
    if found is not None:
        member_id = member_id or found[0]
        report_id = report_id or found[1]
    if type(event) in _WRITES_OWN_CLAIM_EVENT_ROW:
        return
    await driver.execute(
        conn,
        _CLAIM_EVENT_INSERT,
        env.event_id,
        member_id,
        claim_id,
        report_id,
        env.occurred_at,
        env.aggregate_version,
        env.event_type,
        json.dumps(env.data, separators=(",", ":")),
    )


#: Every claims event (two per report at least) writes these: sent to asyncpg directly.
_CLAIM_EVENT_INSERT = """
    INSERT INTO claim_events (event_id, member_id, claim_id, report_id, occurred_at,
                              aggregate_version, event_type, data)
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb) ON CONFLICT DO NOTHING
"""
#: A filed claim's row and its timeline row in one statement (the same as the two above).
_CLAIM_FILED_INSERT = """
    WITH claim AS (
        INSERT INTO member_claims (claim_id, member_id, report_id, plan_code, benefit, enrollment_id,
                                   status, required_documents, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, 'filed', $7::jsonb, $8) ON CONFLICT DO NOTHING
    )
    INSERT INTO claim_events (event_id, member_id, claim_id, report_id, occurred_at,
                              aggregate_version, event_type, data)
    VALUES ($9, $2, $1, $3, $8, $10, $11, $12::jsonb) ON CONFLICT DO NOTHING
"""
#: Claims event types whose projector writes the ``claim_events`` row itself (one round trip).
_WRITES_OWN_CLAIM_EVENT_ROW: frozenset[type[DomainEvent]] = frozenset({claims_contract.ClaimFiled})


@claim_projectors.on(claims_contract.ClaimFiled)
async def _claim_filed(conn: AsyncConnection, env: EventEnvelope, e: claims_contract.ClaimFiled) -> None:
    await driver.execute(conn, _CLAIM_FILED_INSERT, *_claim_filed_row(env, e))


def _claim_filed_row(env: EventEnvelope, e: claims_contract.ClaimFiled) -> tuple[Any, ...]:
    return (
        e.claim_id,
        e.member_id,
        e.report_id,
        e.plan_code,
        e.benefit,
        e.enrollment_id,
        json.dumps(list(e.required_documents)),
        env.occurred_at,
        # its timeline row, as project_claim_event writes it for every other claims event
        env.event_id,
        env.aggregate_version,
        env.event_type,
        json.dumps(env.data, separators=(",", ":")),
    )


async def project_claim_events(conn: AsyncConnection, envelopes: Sequence[EventEnvelope]) -> None:
    """``project_claim_event`` for consecutive events: a run of ``ClaimFiled`` (a batch's
    reports' claims) in one round trip, anything else one by one, in order."""
    filed: list[tuple[Any, ...]] = []
    for env in envelopes:
        if env.event_type == claims_contract.ClaimFiled.event_type:
            e = claims_contract.registry.decode(env.event_type, env.schema_version, env.data)
            assert isinstance(e, claims_contract.ClaimFiled)
            filed.append(_claim_filed_row(env, e))
            continue
        await driver.executemany(conn, _CLAIM_FILED_INSERT, filed)
        filed = []
        await project_claim_event(conn, env)
    await driver.executemany(conn, _CLAIM_FILED_INSERT, filed)


async def _claim_changed(
    conn: AsyncConnection, env: EventEnvelope, claim_id: Any, **values: Any
) -> tuple[Any, Any] | None:
    row = (
        await conn.execute(
            sa.update(member_claims)
            .where(member_claims.c.claim_id == claim_id)
            .values(updated_at=env.occurred_at, **values)
            .returning(member_claims.c.member_id, member_claims.c.report_id)
        )
    ).first()
    return None if row is None else (row.member_id, row.report_id)


@claim_projectors.on(claims_contract.ClaimDocumentsReceived)
async def _claim_documents(
    conn: AsyncConnection, env: EventEnvelope, e: claims_contract.ClaimDocumentsReceived
) -> tuple[Any, Any] | None:
    values: dict[str, Any] = {"missing_documents": list(e.missing)}
    if e.complete:
        values["status"] = "documents_complete"
    return await _claim_changed(conn, env, e.claim_id, **values)


@claim_projectors.on(claims_contract.ClaimApproved)
async def _claim_approved(
    conn: AsyncConnection, env: EventEnvelope, e: claims_contract.ClaimApproved
) -> tuple[Any, Any] | None:
    return await _claim_changed(conn, env, e.claim_id, status="approved", amount=e.amount)


@claim_projectors.on(claims_contract.ClaimRejected)
async def _claim_rejected(
    conn: AsyncConnection, env: EventEnvelope, e: claims_contract.ClaimRejected
) -> tuple[Any, Any] | None:
    return await _claim_changed(conn, env, e.claim_id, status="rejected")


@claim_projectors.on(claims_contract.ClaimPaid)
async def _claim_paid(
    conn: AsyncConnection, env: EventEnvelope, e: claims_contract.ClaimPaid
) -> tuple[Any, Any] | None:
    return await _claim_changed(conn, env, e.claim_id, status="paid", amount=e.amount)


#: No claim row to change: the reasons go onto the timeline (and the report's detail) only.
claim_projectors.ignore(claims_contract.NoCoverageFound)
