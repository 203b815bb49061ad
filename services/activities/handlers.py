"""Use cases of the activities service, and its reactions to ``membership.events``.

Every command on one activity serialises on a transaction-scoped advisory lock on that activity
before it loads the stream: 50 members racing for the last places are decided one after another
against fresh state (the optimistic version check would otherwise make 49 of them retry, and
three attempts are not enough). A command that checks a member takes the member's lock *shared*
first, and the reaction to ``MemberLeft`` holds it exclusively (the consumer takes it for the
whole batch, before any activity lock): a registration and its member's departure never miss
each other, and the locks are always taken member first, activity second, so they cannot deadlock.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.activities import schemas, views
from services.activities import tables as t
from services.activities.domain import Activity, Interest, Outcome, Registrant, SessionPlan, activity_day
from services.activities.residents import Residents
from shared.aggregate import InvalidInput
from shared.contracts import activities as c
from shared.contracts import membership as m
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.inbox import Lock, Reaction
from shared.locks import LockSpace, xact_lock_sql
from shared.unit_of_work import UnitOfWork

#: The instant commands are judged at (injected; tests fix it).
Now = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


_ACTIVITY_LOCK = sa.text(xact_lock_sql(LockSpace.ACTIVITY))
_MEMBER_SHARED = sa.text(f"SELECT pg_advisory_xact_lock_shared({int(LockSpace.MEMBER)}, hashtext(:name))")


async def _lock_activity(uow: UnitOfWork, activity_id: uuid.UUID | str) -> None:
    await uow.conn.execute(_ACTIVITY_LOCK, {"name": str(activity_id)})


async def _lock_member(uow: UnitOfWork, member_id: uuid.UUID) -> None:
    await uow.conn.execute(_MEMBER_SHARED, {"name": str(member_id)})


async def _activity(uow: UnitOfWork, activity_id: uuid.UUID) -> Activity:
    await _lock_activity(uow, activity_id)
    return await uow.get(Activity, str(activity_id), "activity")


# --- activities -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scheduled:
    activity: Activity
    notified: list[uuid.UUID]


async def schedule(uow: UnitOfWork, command: schemas.ScheduleActivity, clock: Now) -> Scheduled:
    """Schedule; the open interests in its kind are notified in the same transaction."""
    activity = Activity(str(uuid.uuid4()))
    activity.schedule(
        kind=command.kind,
        title=command.title,
        starts_at=command.starts_at,
        ends_at=command.ends_at,
        venue=command.venue,
        capacity=command.capacity,
        audience=command.audience,
        child_age_min=command.child_age_min,
        child_age_max=command.child_age_max,
        registration_opens_at=command.registration_opens_at,
        registration_closes_at=command.registration_closes_at,
        union_id=command.union_id,
        partner=c.Partner(name=command.partner.name, kind=command.partner.kind) if command.partner else None,
        sessions=[
            (uuid.uuid4(), SessionPlan(s.title, s.capacity, s.starts_at, s.ends_at)) for s in command.sessions
        ],
        now=clock(),
    )
    # Two activities of a kind scheduled at once must not both tell the same interests.
    await _lock_activity(uow, f"interests:{command.kind.value}")
    interests = await views.open_interests(uow.conn, command.kind)
    activity.notify_interested(interests)
    await uow.save(activity)
    return Scheduled(activity, [i for i, _ in interests])


async def change(
    uow: UnitOfWork, activity_id: uuid.UUID, command: schemas.ChangeActivity, clock: Now
) -> Activity:
    activity = await _activity(uow, activity_id)
    activity.change(
        title=command.title,
        starts_at=command.starts_at,
        ends_at=command.ends_at,
        venue=command.venue,
        capacity=command.capacity,
        registration_closes_at=command.registration_closes_at,
        now=clock(),
    )
    await uow.save(activity)
    return activity


async def cancel(
    uow: UnitOfWork, activity_id: uuid.UUID, command: schemas.CancelActivity, clock: Now
) -> list[uuid.UUID]:
    activity = await _activity(uow, activity_id)
    cancelled = activity.cancel(reason=command.reason, now=clock())
    await uow.save(activity)
    return cancelled


async def close_registration(uow: UnitOfWork, activity_id: uuid.UUID, clock: Now) -> Activity:
    activity = await _activity(uow, activity_id)
    activity.close_registration(clock())
    await uow.save(activity)
    return activity


# --- registrations ----------------------------------------------------------------------------


async def register(
    uow: UnitOfWork, activity_id: uuid.UUID, command: schemas.Register, clock: Now, residents: Residents
) -> tuple[Activity, Outcome]:
    if (command.member_id is None) == (command.resident is None):
        raise InvalidInput(
            "give either member_id or resident", field="member_id", code="member_or_resident_required"
        )
    if command.member_id is not None:
        await _lock_member(uow, command.member_id)
        registrant = Registrant(member=await views.member_standing(uow.conn, command.member_id))
    else:
        assert command.resident is not None
        registrant = Registrant(resident_ref=residents.ref(command.resident.phone))
    activity = await _activity(uow, activity_id)
    registration_id = uuid.uuid4()
    outcome = activity.register(
        registration_id,
        registrant,
        session_id=command.session_id,
        children=[child.birth_date for child in command.children],
        now=clock(),
    )
    await uow.save(activity)
    if command.resident is not None and registrant.resident_ref is not None:
        await residents.record(
            uow.conn,
            registration_id,
            registrant.resident_ref,
            command.resident.full_name,
            command.resident.phone,
        )
    return activity, outcome


async def cancel_registration(
    uow: UnitOfWork, activity_id: uuid.UUID, registration_id: uuid.UUID, clock: Now
) -> uuid.UUID | None:
    """Cancel; the first in line takes the freed place in the same transaction."""
    activity = await _activity(uow, activity_id)
    promoted = activity.cancel_registration(
        registration_id, reason=c.CancellationReason.REQUESTED, now=clock()
    )
    await uow.save(activity)
    return promoted


async def check_in(
    uow: UnitOfWork, activity_id: uuid.UUID, registration_id: uuid.UUID, clock: Now
) -> Activity:
    activity = await _activity(uow, activity_id)
    activity.check_in(registration_id, clock())
    await uow.save(activity)
    return activity


async def submit_feedback(
    uow: UnitOfWork, activity_id: uuid.UUID, registration_id: uuid.UUID, command: schemas.Feedback, clock: Now
) -> Activity:
    activity = await _activity(uow, activity_id)
    activity.submit_feedback(registration_id, rating=command.rating, comment=command.comment, now=clock())
    await uow.save(activity)
    return activity


# --- volunteers and interest ------------------------------------------------------------------


async def assign_volunteer(
    uow: UnitOfWork, activity_id: uuid.UUID, command: schemas.AssignVolunteer, clock: Now
) -> Activity:
    await _lock_member(uow, command.member_id)
    standing = await views.member_standing(uow.conn, command.member_id)
    activity = await _activity(uow, activity_id)
    activity.assign_volunteer(standing, role=command.role, now=clock())
    await uow.save(activity)
    return activity


async def release_volunteer(
    uow: UnitOfWork, activity_id: uuid.UUID, member_id: uuid.UUID, clock: Now
) -> Activity:
    activity = await _activity(uow, activity_id)
    activity.release_volunteer(member_id, now=clock())
    await uow.save(activity)
    return activity


async def register_interest(uow: UnitOfWork, command: schemas.RegisterInterest, clock: Now) -> Interest:
    await _lock_member(uow, command.member_id)
    await _lock_activity(uow, f"interests:{command.kind.value}")
    standing = await views.member_standing(uow.conn, command.member_id)
    interest = Interest(str(uuid.uuid4()))
    already = await views.has_open_interest(uow.conn, command.member_id, command.kind)
    interest.register(standing, command.kind, already_open=already, today=activity_day(clock()))
    await uow.save(interest)
    return interest


# --- reactions to membership.events -----------------------------------------------------------

member_reactions: HandlerTable[Callable[..., object]] = HandlerTable("activities.members")
member_reactions.ignore(
    m.UnionRegistered,
    m.CardIssued,
    m.CardCancelled,
    m.PlanEnrolled,
    m.EnrollmentCancelled,
    m.InjuryReported,
    m.PlanDefined,
    m.MemberPhoneChanged,  # activities keeps no phone of members
)


#: The membership streams ``member_reactions`` read: members only. Injury reports, plans and
#: unions are passed over without a row written.
MEMBER_STREAMS = ("Member",)


def member_locks(envelope: EventEnvelope) -> list[Lock]:
    """A departure holds its member for the whole batch (see the module's docstring)."""
    if envelope.event_type == "MemberLeft" and envelope.aggregate_type == "Member":
        return [Lock(LockSpace.MEMBER, envelope.aggregate_id)]
    return []


@member_reactions.on(m.MemberJoined)
async def on_member_joined(uow: UnitOfWork, event: m.MemberJoined, clock: Now) -> None:
    await uow.conn.execute(
        pg_insert(t.known_members)
        .values(member_id=event.member_id, union_id=event.union_id, joined_on=event.joined_on)
        .on_conflict_do_nothing()
    )


@member_reactions.on(m.MemberTransferred)
async def on_member_transferred(uow: UnitOfWork, event: m.MemberTransferred, clock: Now) -> None:
    await uow.conn.execute(
        sa.update(t.known_members)
        .where(t.known_members.c.member_id == event.member_id)
        .values(union_id=event.to_union_id)
    )


@member_reactions.on(m.MemberLeft)
async def on_member_left(uow: UnitOfWork, event: m.MemberLeft, clock: Now) -> None:
    """The member loses their registrations for activities from ``left_on`` on; each freed place
    goes to the first in line, in this same transaction."""
    await uow.conn.execute(
        sa.update(t.known_members)
        .where(t.known_members.c.member_id == event.member_id)
        .values(left_on=event.left_on)
    )
    now = clock()
    for activity_id in await views.activities_with_future_registrations(
        uow.conn, event.member_id, event.left_on
    ):
        activity = await _activity(uow, activity_id)
        for registration_id in activity.live_registrations_of(event.member_id):
            activity.cancel_registration(registration_id, reason=c.CancellationReason.MEMBER_LEFT, now=now)
        await uow.save(activity)


def membership_reactions(clock: Now) -> dict[str, Reaction]:
    """The consumer's reactions by event type name; the other types are skipped (their stream
    versions still count)."""

    def bind(event_type: type[DomainEvent]) -> Reaction:
        handler = member_reactions.handler(event_type)
        assert handler is not None

        async def react(uow: UnitOfWork, envelope: EventEnvelope) -> None:
            event = m.registry.decode(envelope.event_type, envelope.schema_version, envelope.data)
            await handler(uow, event, clock)  # type: ignore[misc]

        return react

    return {event_type.event_type: bind(event_type) for event_type in member_reactions.handled()}
