"""activities.events -> the member's timeline: their registrations, places, attendance.

Kept apart from the membership projections (it is fed by another service's topic, like the
claims events, and is not rebuilt from this service's own store). Events without a member
(residents' registrations) and types this release does not know are skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable

from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.membership.tables import activity_events
from shared.contracts import activities as a
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.inbox import Reaction
from shared.unit_of_work import UnitOfWork

Handler = Callable[[AsyncConnection, EventEnvelope, uuid.UUID], Awaitable[None]]
timeline: HandlerTable[Handler] = HandlerTable("membership.activity_timeline")
timeline.ignore(
    a.ActivityScheduled,
    a.ActivityChanged,
    a.ActivityCancelled,  # each registrant gets their own RegistrationCancelled
    a.RegistrationWindowClosed,
    a.InterestedMembersNotified,
)

_INSERT = pg_insert(activity_events).on_conflict_do_nothing()


@timeline.on(
    a.RegistrationConfirmed,
    a.RegistrationWaitlisted,
    a.RegistrationCancelled,
    a.WaitlistPromoted,
    a.AttendanceRecorded,
    a.FeedbackSubmitted,
    a.VolunteerAssigned,
    a.VolunteerReleased,
    a.InterestRegistered,
)
async def _on_member_entry(conn: AsyncConnection, env: EventEnvelope, member_id: uuid.UUID) -> None:
    await conn.execute(
        _INSERT,
        {
            "event_id": env.event_id,
            "member_id": member_id,
            "activity_id": uuid.UUID(str(env.data["activity_id"])) if env.data.get("activity_id") else None,
            "occurred_at": env.occurred_at,
            "aggregate_version": env.aggregate_version,
            "event_type": env.event_type,
            "data": env.data,
        },
    )


async def record_activity_event(uow: UnitOfWork, env: EventEnvelope) -> None:
    if env.event_type not in a.registry:
        return
    event = a.registry.decode(env.event_type, env.schema_version, env.data)
    member_id = getattr(event, "member_id", None)
    handler = timeline.handler(type(event))
    if handler is not None and isinstance(member_id, uuid.UUID):
        await handler(uow.conn, env, member_id)


ACTIVITY_REACTIONS: dict[str, Reaction] = {t.event_type: record_activity_event for t in timeline.handled()}
