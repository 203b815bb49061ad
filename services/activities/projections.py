"""Inline read models of the activities service, updated in the transaction that appends the event
(and rebuilt from the event store by ``python -m services.activities rebuild``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.activities import tables as t
from shared.contracts import activities as c
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.projections import Projection

Handler = Callable[[AsyncConnection, EventEnvelope, Any], Awaitable[None]]
read_models: HandlerTable[Handler] = HandlerTable("activities.read_models")


async def apply(conn: AsyncConnection, envelope: EventEnvelope) -> None:
    if envelope.event_type not in c.registry:
        return
    event: DomainEvent = c.registry.decode(envelope.event_type, envelope.schema_version, envelope.data)
    handler = read_models.handler(type(event))
    if handler is not None:
        await handler(conn, envelope, event)


own_projection = Projection("activities", t.READ_MODEL_TABLES, apply)


@read_models.on(c.ActivityScheduled)
async def _scheduled(conn: AsyncConnection, env: EventEnvelope, e: c.ActivityScheduled) -> None:
    await conn.execute(
        pg_insert(t.activities)
        .values(
            activity_id=e.activity_id,
            kind=e.kind.value,
            title=e.title,
            starts_at=e.starts_at,
            ends_at=e.ends_at,
            venue=e.venue,
            capacity=e.capacity,
            audience=e.audience.value,
            child_age_min=e.child_age_min,
            child_age_max=e.child_age_max,
            registration_opens_at=e.registration_opens_at,
            registration_closes_at=e.registration_closes_at,
            union_id=e.union_id,
            partner=e.partner.model_dump(mode="json") if e.partner else None,
            sessions=[s.model_dump(mode="json") for s in e.sessions],
            status="scheduled",
            updated_at=env.occurred_at,
        )
        .on_conflict_do_nothing()
    )


@read_models.on(c.ActivityChanged)
async def _changed(conn: AsyncConnection, env: EventEnvelope, e: c.ActivityChanged) -> None:
    await conn.execute(
        sa.update(t.activities)
        .where(t.activities.c.activity_id == e.activity_id)
        .values(
            title=e.title,
            starts_at=e.starts_at,
            ends_at=e.ends_at,
            venue=e.venue,
            capacity=e.capacity,
            registration_closes_at=e.registration_closes_at,
            updated_at=env.occurred_at,
        )
    )


@read_models.on(c.ActivityCancelled)
async def _cancelled(conn: AsyncConnection, env: EventEnvelope, e: c.ActivityCancelled) -> None:
    await conn.execute(
        sa.update(t.activities)
        .where(t.activities.c.activity_id == e.activity_id)
        .values(status="cancelled", cancel_reason=e.reason, updated_at=env.occurred_at)
    )


@read_models.on(c.RegistrationWindowClosed)
async def _window_closed(conn: AsyncConnection, env: EventEnvelope, e: c.RegistrationWindowClosed) -> None:
    await conn.execute(
        sa.update(t.activities)
        .where(t.activities.c.activity_id == e.activity_id)
        .values(registration_window_closed=True, updated_at=env.occurred_at)
    )


@read_models.on(c.RegistrationConfirmed, c.RegistrationWaitlisted)
async def _registered(
    conn: AsyncConnection, env: EventEnvelope, e: c.RegistrationConfirmed | c.RegistrationWaitlisted
) -> None:
    waitlisted = isinstance(e, c.RegistrationWaitlisted)
    await conn.execute(
        pg_insert(t.registrations)
        .values(
            registration_id=e.registration_id,
            activity_id=e.activity_id,
            session_id=e.session_id,
            member_id=e.member_id,
            resident_ref=e.resident_ref,
            member_union_id=e.member_union_id,
            status="waitlisted" if waitlisted else "confirmed",
            waitlist_seq=env.aggregate_version if waitlisted else None,
            ever_waitlisted=waitlisted,
            ever_confirmed=not waitlisted,
            children_ages=list(e.children_ages),
            registered_at=e.registered_at,
        )
        .on_conflict_do_nothing()
    )


@read_models.on(c.RegistrationCancelled)
async def _registration_cancelled(
    conn: AsyncConnection, env: EventEnvelope, e: c.RegistrationCancelled
) -> None:
    await conn.execute(
        sa.update(t.registrations)
        .where(t.registrations.c.registration_id == e.registration_id)
        .values(status="cancelled", cancelled_at=e.cancelled_at, cancel_reason=e.reason.value)
    )


@read_models.on(c.WaitlistPromoted)
async def _promoted(conn: AsyncConnection, env: EventEnvelope, e: c.WaitlistPromoted) -> None:
    await conn.execute(
        sa.update(t.registrations)
        .where(t.registrations.c.registration_id == e.registration_id)
        .values(status="confirmed", ever_confirmed=True, waitlist_seq=None)
    )


@read_models.on(c.AttendanceRecorded)
async def _attended(conn: AsyncConnection, env: EventEnvelope, e: c.AttendanceRecorded) -> None:
    await conn.execute(
        sa.update(t.registrations)
        .where(t.registrations.c.registration_id == e.registration_id)
        .values(checked_in_at=e.checked_in_at)
    )


@read_models.on(c.FeedbackSubmitted)
async def _feedback(conn: AsyncConnection, env: EventEnvelope, e: c.FeedbackSubmitted) -> None:
    await conn.execute(
        pg_insert(t.feedback)
        .values(
            registration_id=e.registration_id,
            activity_id=e.activity_id,
            rating=e.rating,
            comment=e.comment,
            submitted_at=e.submitted_at,
        )
        .on_conflict_do_nothing()
    )


@read_models.on(c.VolunteerAssigned)
async def _volunteer(conn: AsyncConnection, env: EventEnvelope, e: c.VolunteerAssigned) -> None:
    await conn.execute(
        pg_insert(t.volunteers)
        .values(activity_id=e.activity_id, member_id=e.member_id, role=e.role, assigned_on=e.assigned_on)
        .on_conflict_do_nothing()
    )


@read_models.on(c.VolunteerReleased)
async def _volunteer_released(conn: AsyncConnection, env: EventEnvelope, e: c.VolunteerReleased) -> None:
    await conn.execute(
        sa.delete(t.volunteers).where(
            t.volunteers.c.activity_id == e.activity_id, t.volunteers.c.member_id == e.member_id
        )
    )


@read_models.on(c.InterestRegistered)
async def _interest(conn: AsyncConnection, env: EventEnvelope, e: c.InterestRegistered) -> None:
    await conn.execute(
        pg_insert(t.interests)
        .values(
            interest_id=e.interest_id,
            member_id=e.member_id,
            kind=e.kind.value,
            registered_on=e.registered_on,
            registered_at=env.occurred_at,
        )
        .on_conflict_do_nothing()
    )


@read_models.on(c.InterestedMembersNotified)
async def _notified(conn: AsyncConnection, env: EventEnvelope, e: c.InterestedMembersNotified) -> None:
    await conn.execute(
        sa.update(t.interests)
        .where(t.interests.c.interest_id.in_(e.interest_ids))
        .values(notified_activity_id=e.activity_id)
    )
