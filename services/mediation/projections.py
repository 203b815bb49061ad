"""Inline read models of our own events (``apply``, run in the appending transaction and by a
rebuild), and the union tree and members from ``membership.events`` (``MEMBERSHIP``).

Every write is idempotent (insert-or-ignore on the primary key only, or an update to the value
the event fixes), so a replayed event leaves the same rows."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.mediation.tables import READ_MODEL_TABLES, case_history, cases, members, sessions, unions
from shared.contracts import mediation as c
from shared.contracts import membership as m
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.projections import ProgressCallback, Projection, rebuild

Projector = Callable[[AsyncConnection, EventEnvelope, Any], Awaitable[None]]

#: Our own events -> the cases, history and sessions read models.
OWN: HandlerTable[Projector] = HandlerTable("mediation.read_models")
OWN.ignore(c.RoomBooked, c.RoomReleased)  # the room is read through the sessions table

#: membership.events -> the union tree and members this service needs.
MEMBERSHIP: HandlerTable[Callable[[AsyncConnection, Any], Awaitable[None]]] = HandlerTable("mediation.unions")
MEMBERSHIP.ignore(
    m.MemberPhoneChanged,
    m.CardIssued,
    m.CardCancelled,
    m.PlanEnrolled,
    m.EnrollmentCancelled,
    m.InjuryReported,
    m.PlanDefined,
)


async def apply(conn: AsyncConnection, env: EventEnvelope) -> None:
    if env.event_type not in c.registry:
        return
    event = c.registry.decode(env.event_type, env.schema_version, env.data)
    project = OWN.handler(type(event))
    if project is None:
        return
    await project(conn, env, event)
    if env.aggregate_type == "Case":
        await conn.execute(
            pg_insert(case_history)
            .values(
                event_id=env.event_id,
                case_id=env.aggregate_id,
                version=env.aggregate_version,
                occurred_at=env.occurred_at,
                event_type=env.event_type,
                data=env.data,
            )
            .on_conflict_do_nothing(index_elements=[case_history.c.event_id])
        )
        await conn.execute(
            sa.update(cases)
            .where(cases.c.case_id == env.aggregate_id, cases.c.version < env.aggregate_version)
            .values(version=env.aggregate_version)
        )


def _case(e: Any) -> Any:
    return sa.update(cases).where(cases.c.case_id == e.case_id)


@OWN.on(c.CaseReceived)
async def _received(conn: AsyncConnection, env: EventEnvelope, e: c.CaseReceived) -> None:
    await conn.execute(
        pg_insert(cases)
        .values(
            case_id=e.case_id,
            case_number=e.case_number,
            station_union_id=e.station_union_id,
            party=e.party,
            member_id=e.member_id,
            category=e.category,
            amount_claimed=e.amount_claimed,
            learned_on=e.learned_on,
            received_on=e.received_on,
            mediation_deadline=e.mediation_deadline,
            arbitration_limit=e.arbitration_limit,
            status="open",
            tier=c.Tier.STREET,
            handling_union_id=e.station_union_id,
            handled_by=[e.station_union_id],
            version=env.aggregate_version,
        )
        # A replay meets its own row (the primary key); any other unique index it meets is a
        # fault to raise, never a case to lose silently (case numbers are unique per prefix, and
        # a prefix is one station's: tables.case_prefixes).
        .on_conflict_do_nothing(index_elements=[cases.c.case_id])
    )


@OWN.on(c.MediationSessionScheduled)
async def _session(conn: AsyncConnection, env: EventEnvelope, e: c.MediationSessionScheduled) -> None:
    await conn.execute(
        pg_insert(sessions)
        .values(
            session_id=e.session_id,
            case_id=e.case_id,
            room_id=e.room_id,
            starts_at=e.starts_at,
            ends_at=e.ends_at,
            mediator=e.mediator,
            parties_present=e.parties_present,
            minutes_recorded=False,
        )
        .on_conflict_do_nothing(index_elements=[sessions.c.session_id])
    )


@OWN.on(c.MinutesRecorded)
async def _minutes(conn: AsyncConnection, env: EventEnvelope, e: c.MinutesRecorded) -> None:
    await conn.execute(
        sa.update(sessions).where(sessions.c.session_id == e.session_id).values(minutes_recorded=True)
    )


@OWN.on(c.SessionCancelled)
async def _session_cancelled(conn: AsyncConnection, env: EventEnvelope, e: c.SessionCancelled) -> None:
    await conn.execute(
        sa.update(sessions).where(sessions.c.session_id == e.session_id).values(cancelled_on=e.cancelled_on)
    )


@OWN.on(c.AgreementReached)
async def _agreed(conn: AsyncConnection, env: EventEnvelope, e: c.AgreementReached) -> None:
    await conn.execute(
        _case(e).values(
            status="agreed",
            agreed_on=e.agreed_on,
            agreed_amount=e.amount,
            agreement_due_on=e.due_on,
            agreed_tier=e.tier,
            closed_on=e.agreed_on,
        )
    )


@OWN.on(c.AgreementFulfilled)
async def _fulfilled(conn: AsyncConnection, env: EventEnvelope, e: c.AgreementFulfilled) -> None:
    await conn.execute(_case(e).values(fulfilled_on=e.fulfilled_on, amount_paid=e.amount_paid))


@OWN.on(c.EmployerRefused)
async def _refused(conn: AsyncConnection, env: EventEnvelope, e: c.EmployerRefused) -> None:
    await conn.execute(_case(e).values(employer_refused_on=e.refused_on))


@OWN.on(c.CaseWithdrawn)
async def _withdrawn(conn: AsyncConnection, env: EventEnvelope, e: c.CaseWithdrawn) -> None:
    await conn.execute(_case(e).values(status="withdrawn", closed_on=e.withdrawn_on))


@OWN.on(c.CaseReferredToArbitration)
async def _referred(conn: AsyncConnection, env: EventEnvelope, e: c.CaseReferredToArbitration) -> None:
    await conn.execute(
        _case(e).values(status="referred_to_arbitration", referred_to=e.body, closed_on=e.referred_on)
    )


@OWN.on(c.CaseEscalated)
async def _escalated(conn: AsyncConnection, env: EventEnvelope, e: c.CaseEscalated) -> None:
    await conn.execute(
        _case(e)
        .where(sa.not_(cases.c.handled_by.contains([e.to_union_id])))
        .values(handled_by=sa.func.array_append(cases.c.handled_by, e.to_union_id))
    )
    await conn.execute(
        _case(e).values(
            status="escalated",
            tier=e.to_tier,
            handling_union_id=e.to_union_id,
            mediation_deadline=e.mediation_deadline,
            employer_refused_on=None,
        )
    )


@OWN.on(c.MediationDeadlinePassed)
async def _deadline(conn: AsyncConnection, env: EventEnvelope, e: c.MediationDeadlinePassed) -> None:
    await conn.execute(_case(e).values(deadline_passed_on=e.detected_on))


@OWN.on(c.ArbitrationLimitNear)
async def _limit(conn: AsyncConnection, env: EventEnvelope, e: c.ArbitrationLimitNear) -> None:
    await conn.execute(_case(e).values(limit_near_on=e.detected_on))


# --- membership.events ---------------------------------------------------------------------------


@MEMBERSHIP.on(m.UnionRegistered)
async def _union(conn: AsyncConnection, e: m.UnionRegistered) -> None:
    await conn.execute(
        pg_insert(unions)
        .values(union_id=e.union_id, name=e.name, level=e.level, parent_id=e.parent_union_id)
        .on_conflict_do_nothing()
    )


@MEMBERSHIP.on(m.MemberJoined)
async def _joined(conn: AsyncConnection, e: m.MemberJoined) -> None:
    await conn.execute(
        pg_insert(members)
        .values(member_id=e.member_id, union_id=e.union_id, active=True)
        .on_conflict_do_nothing()
    )


@MEMBERSHIP.on(m.MemberTransferred)
async def _transferred(conn: AsyncConnection, e: m.MemberTransferred) -> None:
    await conn.execute(
        sa.update(members).where(members.c.member_id == e.member_id).values(union_id=e.to_union_id)
    )


@MEMBERSHIP.on(m.MemberLeft)
async def _left(conn: AsyncConnection, e: m.MemberLeft) -> None:
    await conn.execute(sa.update(members).where(members.c.member_id == e.member_id).values(active=False))


READ_MODELS = Projection("mediation read models", READ_MODEL_TABLES, apply)


async def rebuild_read_models(
    engine: AsyncEngine, store: EventStore, *, progress: ProgressCallback | None = None
) -> int:
    return await rebuild(engine, store, READ_MODELS, progress=progress)
