"""Use cases of the counseling service: load, let the domain decide, save.

Each takes ``(uow, command, clock, ...)``; the route passes the ids of its path and the caller
(``actor``) where a rule depends on who asks.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError

from services.counseling import views
from services.counseling.domain import Appointment, Counselor, NotAssigned, Slot, SlotTaken
from services.counseling.projections import apply_membership
from services.counseling.schemas import BookingIn, CancelIn, CompleteIn, CounselorIn, NoShowIn, SlotIn
from services.counseling.vault import ClientVault, Contact, NotesVault
from shared.aggregate import Conflict
from shared.auth import Principal, Role
from shared.clock import Clock
from shared.contracts import membership as m
from shared.contracts.counseling import CancelledBy
from shared.envelope import EventEnvelope
from shared.locks import LockSpace
from shared.unit_of_work import UnitOfWork


def _violates(exc: IntegrityError, constraint: str) -> bool:
    return constraint in str(exc.orig)


# --- counsellors ------------------------------------------------------------------------------


async def onboard_counselor(uow: UnitOfWork, command: CounselorIn, clock: Clock) -> Counselor:
    if await views.active_counselor_of(uow.conn, command.subject) is not None:
        raise Conflict(
            "an active counsellor already acts as this subject", field="subject", code="subject_taken"
        )
    counselor = Counselor.onboard(
        uuid.uuid4(),
        display_name=command.display_name,
        provider=command.provider,
        subject=command.subject,
        today=clock(),
    )
    try:
        await uow.save(counselor)
    except IntegrityError as exc:  # two onboardings of one subject at the same moment
        if _violates(exc, "counselors_active_subject"):
            raise Conflict(
                "an active counsellor already acts as this subject", field="subject", code="subject_taken"
            ) from None
        raise
    return counselor


async def deactivate_counselor(uow: UnitOfWork, counselor_id: uuid.UUID, clock: Clock) -> Counselor:
    counselor = await uow.get(Counselor, str(counselor_id), "counselor")
    counselor.deactivate(today=clock())
    await uow.save(counselor)
    return counselor


@dataclass(frozen=True)
class PublishedSlot:
    counselor: Counselor
    slot: Slot


async def publish_slot(
    uow: UnitOfWork, counselor_id: uuid.UUID, command: SlotIn, clock: Clock, *, actor: Principal
) -> PublishedSlot:
    """Staff publish any counsellor's slots; a counsellor only their own."""
    await uow.lock(LockSpace.COUNSELOR, counselor_id)  # one counsellor's slots one at a time
    counselor = await uow.get(Counselor, str(counselor_id), "counselor")
    if actor.role is Role.COUNSELOR and actor.subject != counselor.subject:
        raise NotAssigned("publish this counsellor's slots")
    slot = counselor.publish_slot(uuid.uuid4(), command.starts_at, command.ends_at, today=clock())
    await uow.save(counselor)  # a concurrent slot of the same counsellor conflicts, and is retried
    return PublishedSlot(counselor, slot)


# --- appointments -------------------------------------------------------------------------------


async def book(uow: UnitOfWork, command: BookingIn, clock: Clock, *, clients: ClientVault) -> Appointment:
    """One live appointment per slot: the domain refuses a slot it sees taken, and the unique
    index ``appointments_one_per_slot`` refuses the racers it could not see (both: 409 slot_taken)."""
    counselor_id = await views.counselor_of_slot(uow.conn, command.slot_id)
    counselor = await uow.load(Counselor, str(counselor_id)) if counselor_id else Counselor(str(uuid.uuid4()))
    if command.member_id is not None:
        await views.require_active_member(uow.conn, command.member_id)
        client = clients.member(command.member_id)
    else:
        assert command.resident is not None
        client = clients.resident(command.resident.phone)
    appointment = Appointment.book(
        uuid.uuid4(),
        counselor=counselor,
        slot_id=command.slot_id,
        slot_taken=await views.slot_taken(uow.conn, command.slot_id),
        client=client,
        today=clock(),
    )
    if command.member_id is not None:
        await clients.keep_member(uow.conn, client, command.member_id)
    else:
        assert command.resident is not None
        await clients.keep_resident(
            uow.conn, client, Contact(command.resident.full_name, command.resident.phone)
        )
    try:
        await uow.save(appointment)
    except IntegrityError as exc:
        if _violates(exc, "appointments_one_per_slot"):
            raise SlotTaken() from None
        raise
    return appointment


async def _appointment_for(uow: UnitOfWork, appointment_id: uuid.UUID) -> tuple[Appointment, Counselor]:
    appointment = await uow.get(Appointment, str(appointment_id), "appointment")
    counselor = await uow.get(Counselor, str(appointment.counselor_id), "counselor")
    return appointment, counselor


def _counselor_must_be_assigned(actor: Principal, counselor: Counselor, what: str) -> None:
    if actor.role is Role.COUNSELOR and actor.subject != counselor.subject:
        raise NotAssigned(what)


async def cancel(
    uow: UnitOfWork,
    appointment_id: uuid.UUID,
    command: CancelIn,
    clock: Clock,
    *,
    actor: Principal,
    clients: ClientVault,
) -> Appointment:
    appointment, counselor = await _appointment_for(uow, appointment_id)
    _counselor_must_be_assigned(actor, counselor, "cancel this appointment")
    by = CancelledBy.COUNSELOR if actor.role is Role.COUNSELOR else (command.by or CancelledBy.CLIENT)
    appointment.cancel(by=by, today=clock())
    await uow.save(appointment)
    if command.reason:
        await clients.remark(uow.conn, appointment_id, "cancel", command.reason)
    return appointment


async def no_show(
    uow: UnitOfWork,
    appointment_id: uuid.UUID,
    command: NoShowIn,
    clock: Clock,
    *,
    actor: Principal,
    clients: ClientVault,
) -> Appointment:
    appointment, counselor = await _appointment_for(uow, appointment_id)
    _counselor_must_be_assigned(actor, counselor, "record a no-show for this appointment")
    appointment.no_show(today=clock())
    await uow.save(appointment)
    if command.reason:
        await clients.remark(uow.conn, appointment_id, "no_show", command.reason)
    return appointment


async def complete(
    uow: UnitOfWork,
    appointment_id: uuid.UUID,
    command: CompleteIn,
    clock: Clock,
    *,
    actor: Principal,
    notes: NotesVault,
) -> Appointment:
    """The event says the session took place; the notes go, encrypted, to ``session_notes`` in
    the same transaction, and nowhere else."""
    appointment, counselor = await _appointment_for(uow, appointment_id)
    appointment.complete(actor_subject=actor.subject, assigned_subject=counselor.subject, today=clock())
    await uow.save(appointment)
    await notes.write(uow.conn, appointment_id, command.notes, actor.subject)
    return appointment


# --- reacting to membership.events ----------------------------------------------------------------


async def on_membership_event(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    await apply_membership(uow.conn, envelope)


MEMBERSHIP_REACTIONS = {t.event_type: on_membership_event for t in m.registry.types()}
#: The membership streams those reactions read (``projections.members``): members only. Injury
#: reports, plans and unions are passed over without a row written.
MEMBER_STREAMS = ("Member",)
