"""Read models of the counseling service.

- ``apply_own``: counsellors, slots and appointments, projected inline from this service's own
  events (rebuildable with ``python -m services.counseling rebuild``);
- ``apply_membership``: the members booking needs, fed by ``membership.events``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.counseling import tables as t
from shared.contracts import counseling as c
from shared.contracts import membership as m
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.projections import Projection

Apply = Callable[[AsyncConnection, Any], Awaitable[None]]

own = HandlerTable[Apply]("counseling.read_models")


async def apply_own(conn: AsyncConnection, envelope: EventEnvelope) -> None:
    if envelope.event_type not in c.registry:
        return
    event = c.registry.decode(envelope.event_type, envelope.schema_version, envelope.data)
    handler = own.handler(type(event))
    if handler is not None:
        await handler(conn, event)


@own.on(c.CounselorOnboarded)
async def _onboarded(conn: AsyncConnection, e: c.CounselorOnboarded) -> None:
    await conn.execute(
        insert(t.counselors)
        .values(
            counselor_id=e.counselor_id,
            display_name=e.display_name,
            provider=e.provider.value,
            subject=e.subject,
            active=True,
            onboarded_on=e.onboarded_on,
        )
        .on_conflict_do_nothing()
    )


@own.on(c.CounselorDeactivated)
async def _deactivated(conn: AsyncConnection, e: c.CounselorDeactivated) -> None:
    await conn.execute(
        sa.update(t.counselors)
        .where(t.counselors.c.counselor_id == e.counselor_id)
        .values(active=False, deactivated_on=e.deactivated_on)
    )


@own.on(c.SlotPublished)
async def _slot(conn: AsyncConnection, e: c.SlotPublished) -> None:
    await conn.execute(
        insert(t.slots)
        .values(slot_id=e.slot_id, counselor_id=e.counselor_id, starts_at=e.starts_at, ends_at=e.ends_at)
        .on_conflict_do_nothing()
    )


@own.on(c.AppointmentBooked)
async def _booked(conn: AsyncConnection, e: c.AppointmentBooked) -> None:
    # No ON CONFLICT: a second live appointment of the slot must fail here (appointments_one_per_slot).
    await conn.execute(
        sa.insert(t.appointments).values(
            appointment_id=e.appointment_id,
            slot_id=e.slot_id,
            counselor_id=e.counselor_id,
            client_ref=e.client_ref,
            client_kind=e.client_kind.value,
            status="booked",
            starts_at=e.starts_at,
            ends_at=e.ends_at,
            booked_on=e.booked_on,
        )
    )


async def _close(
    conn: AsyncConnection, appointment_id: Any, status: str, on: date, by: str | None = None
) -> None:
    await conn.execute(
        sa.update(t.appointments)
        .where(t.appointments.c.appointment_id == appointment_id)
        .values(status=status, closed_on=on, cancelled_by=by)
    )


@own.on(c.AppointmentCancelled)
async def _cancelled(conn: AsyncConnection, e: c.AppointmentCancelled) -> None:
    await _close(conn, e.appointment_id, "cancelled", e.cancelled_on, e.cancelled_by.value)


@own.on(c.AppointmentCompleted)
async def _completed(conn: AsyncConnection, e: c.AppointmentCompleted) -> None:
    await _close(conn, e.appointment_id, "completed", e.completed_on)


@own.on(c.AppointmentNoShow)
async def _no_show(conn: AsyncConnection, e: c.AppointmentNoShow) -> None:
    await _close(conn, e.appointment_id, "no_show", e.recorded_on)


own_projection = Projection("counseling", t.OWN_READ_MODELS, apply_own)


# --- membership.events ------------------------------------------------------------------------

members = HandlerTable[Apply]("counseling.members")


@members.on(m.MemberJoined)
async def _joined(conn: AsyncConnection, e: m.MemberJoined) -> None:
    await conn.execute(
        insert(t.members)
        .values(member_id=e.member_id, union_id=e.union_id, active=True)
        .on_conflict_do_nothing()
    )


@members.on(m.MemberTransferred)
async def _transferred(conn: AsyncConnection, e: m.MemberTransferred) -> None:
    await conn.execute(
        sa.update(t.members).where(t.members.c.member_id == e.member_id).values(union_id=e.to_union_id)
    )


@members.on(m.MemberLeft)
async def _left(conn: AsyncConnection, e: m.MemberLeft) -> None:
    await conn.execute(sa.update(t.members).where(t.members.c.member_id == e.member_id).values(active=False))


members.ignore(
    m.UnionRegistered,
    m.MemberPhoneChanged,
    m.CardIssued,
    m.CardCancelled,
    m.PlanEnrolled,
    m.EnrollmentCancelled,
    m.InjuryReported,
    m.PlanDefined,
)


async def apply_membership(conn: AsyncConnection, envelope: EventEnvelope) -> None:
    """Known types only (an unknown type is skipped by the consumer before it gets here)."""
    event = m.registry.decode(envelope.event_type, envelope.schema_version, envelope.data)
    handler = members.handler(type(event))
    if handler is not None:
        await handler(conn, event)
