"""Use cases: ``async def <verb>(uow, command, clock, ...)``: load, let the domain decide, save.

Also the reaction to ``membership.events`` (the union tree and members, ``on_membership_event``).
Who may act is decided here from the caller (``Actor``): staff bound to a union act on the cases
that union handles; federation-wide staff and supervisors act on every case. A case the caller's
union has never handled is "not found" to it, on writes as on reads: a 403 would tell another
station's staff which case ids exist.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.mediation import domain, views
from services.mediation.domain import Case, Room
from services.mediation.projections import MEMBERSHIP
from services.mediation.schemas import (
    CancelSession,
    Close,
    ConfigureStation,
    Escalate,
    ReachAgreement,
    ReceiveCase,
    RecordFulfilment,
    RecordMinutes,
    Refer,
    ScheduleSession,
    Sweep,
)
from services.mediation.tables import case_counters, case_prefixes, stations
from services.mediation.vault import Parties, Vault
from shared.aggregate import Aggregate, Conflict, DomainError, NotFound
from shared.clock import Clock
from shared.contracts import membership as m
from shared.contracts.mediation import Party
from shared.envelope import EventEnvelope
from shared.locks import LockSpace
from shared.unit_of_work import UnitOfWork


class Forbidden(DomainError):
    status = 403


@dataclass(frozen=True)
class Actor:
    """The caller as the rules see it."""

    subject: str
    union_id: uuid.UUID | None
    supervisor: bool = False

    def may_act_for(self, union_id: uuid.UUID | None) -> bool:
        return self.union_id is None or self.union_id == union_id

    def may_see(self, case: Case) -> bool:
        """The read rule (``views.may_see``) on the aggregate: unbound callers see every case,
        a union's staff the cases their union has handled."""
        return self.union_id is None or self.union_id in case.handled_by


def _require_visible(actor: Actor, case: Case) -> None:
    if not actor.may_see(case):
        raise NotFound(f"case {case.id} not found")


def _require_handler(actor: Actor, case: Case) -> None:
    _require_visible(actor, case)
    if not actor.may_act_for(case.handling_union_id):
        raise Forbidden("only the union handling this case may change it", code="not_handling_union")


async def _case(uow: UnitOfWork, case_id: uuid.UUID) -> Case:
    return await uow.get(Case, str(case_id), "case")


# --- intake -----------------------------------------------------------------------------------


async def _next_number(uow: UnitOfWork, station: domain.UnionNode, name: str, year: int) -> str:
    """The station's next case number of ``year``: an upsert on the counter row, so concurrent
    intakes at one station queue on that row and the numbers have no gaps (a rolled-back intake
    rolls its number back)."""
    seq = await uow.conn.scalar(
        pg_insert(case_counters)
        .values(station_union_id=station.union_id, year=year, last=1)
        .on_conflict_do_update(
            index_elements=[case_counters.c.station_union_id, case_counters.c.year],
            set_={"last": case_counters.c.last + 1},
        )
        .returning(case_counters.c.last)
    )
    prefix = await _station_prefix(uow, station.union_id, name)
    return domain.case_number(prefix, year, int(seq or 0))


async def _claim_prefix(uow: UnitOfWork, prefix: str, union_id: uuid.UUID) -> bool:
    """Make ``prefix`` the station's for good, unless another station has it. Two stations
    claiming one prefix at once queue on its row: the second sees the first's, and is refused."""
    await uow.conn.execute(
        pg_insert(case_prefixes).values(prefix=prefix, union_id=union_id).on_conflict_do_nothing()
    )
    owner = await uow.conn.scalar(sa.select(case_prefixes.c.union_id).where(case_prefixes.c.prefix == prefix))
    return bool(owner == union_id)


async def _station_prefix(uow: UnitOfWork, union_id: uuid.UUID, name: str) -> str:
    """The prefix the station's numbers take: the one staff set, else its default, which is
    kept (``stations``) so that it never changes under it. The default skips every prefix
    another station has (``domain.station_prefix``)."""
    current = await views.station_prefix(uow.conn, union_id)
    if current is not None and await _claim_prefix(uow, current, union_id):
        return current
    taken = await views.prefixes_of_others(uow.conn, union_id)
    while True:  # bounded: each round adds a candidate to ``taken``; station_prefix raises at the end
        candidate = domain.station_prefix(name, taken)
        if await _claim_prefix(uow, candidate, union_id):
            await uow.conn.execute(
                pg_insert(stations)
                .values(union_id=union_id, case_prefix=candidate)
                .on_conflict_do_update(index_elements=[stations.c.union_id], set_={"case_prefix": candidate})
            )
            return candidate
        taken.add(candidate)


async def receive_case(
    uow: UnitOfWork, command: ReceiveCase, clock: Clock, *, vault: Vault, actor: Actor
) -> Case:
    if not actor.may_act_for(command.union_id):
        raise Forbidden(
            "staff of a station receive cases at their own station", field="union_id", code="not_your_station"
        )
    today = clock()
    received_on = command.received_on or today
    found = await views.union(uow.conn, command.union_id)
    station = found[0] if found else None
    if command.member_id is not None and not await views.member_known(uow.conn, command.member_id):
        raise Conflict(
            "this member is not known here yet (their MemberJoined is on the way); retry",
            field="member_id",
            code="member_not_known",
        )
    number = ""
    if found is not None and station is not None and station.level == "street":
        number = await _next_number(uow, station, found[1], received_on.year)
    case = Case(str(uuid.uuid4()))
    case.receive(
        number=number,
        station=station,
        party=Party.MEMBER if command.member_id else Party.WORKER,
        member_id=command.member_id,
        category=command.category,
        amount=command.amount,
        learned_on=command.learned_on,
        received_on=received_on,
        today=today,
    )
    await uow.save(case)
    await vault.keep_parties(
        uow.conn,
        case.case_id,
        Parties(
            worker_name=command.worker.full_name if command.worker else None,
            worker_phone=command.worker.phone if command.worker else None,
            employer_name=command.employer.name,
            employer_credit_code=command.employer.credit_code,
            claim_text=command.claim_text,
        ),
    )
    return case


async def configure_station(
    uow: UnitOfWork, union_id: uuid.UUID, command: ConfigureStation, *, actor: Actor
) -> None:
    if not actor.may_act_for(union_id):
        raise Forbidden("staff of a station configure their own station", code="not_your_station")
    found = await views.union(uow.conn, union_id)
    if found is None or found[0].level != "street":
        raise Conflict("only a known street union is a station", field="union_id", code="not_a_station")
    if not await _claim_prefix(uow, command.case_prefix, union_id):
        raise Conflict(
            f"the case prefix {command.case_prefix} is another station's (numbers are counted per "
            "station: one prefix at two stations would issue one number twice)",
            field="case_prefix",
            code="prefix_taken",
        )
    await uow.conn.execute(
        pg_insert(stations)
        .values(union_id=union_id, case_prefix=command.case_prefix)
        .on_conflict_do_update(
            index_elements=[stations.c.union_id], set_={"case_prefix": command.case_prefix}
        )
    )


# --- sessions and minutes -------------------------------------------------------------------------


@dataclass(frozen=True)
class Booked:
    case: Case
    session_id: uuid.UUID
    room_id: uuid.UUID


async def schedule_session(
    uow: UnitOfWork, case_id: uuid.UUID, command: ScheduleSession, clock: Clock, *, actor: Actor
) -> Booked:
    case = await _case(uow, case_id)
    _require_handler(actor, case)
    assert case.handling_union_id is not None
    room_id = domain.room_id(case.handling_union_id)
    await uow.lock(LockSpace.ROOM, room_id)  # bookings of one room one at a time
    room = await uow.load(Room, str(room_id))
    session_id = uuid.uuid4()
    # The case decides first (active, the session's instants within bounds), then the room
    # (its order, its length, no overlap).
    case.schedule_session(
        session_id=session_id,
        room_id=room_id,
        starts_at=command.starts_at,
        ends_at=command.ends_at,
        mediator=command.mediator,
        parties_present=list(command.parties_present),
        today=clock(),
    )
    room.book(
        union_id=case.handling_union_id,
        session_id=session_id,
        case_id=case.case_id,
        starts_at=command.starts_at,
        ends_at=command.ends_at,
    )
    # One statement for both streams: a concurrent booking of the same room fails on the room's
    # stream version, and the retry decides again on the room as it now is.
    await uow.save_all([room, case])
    return Booked(case, session_id, room_id)


async def record_minutes(
    uow: UnitOfWork,
    case_id: uuid.UUID,
    session_id: uuid.UUID,
    command: RecordMinutes,
    *,
    vault: Vault,
    actor: Actor,
) -> Case:
    case = await _case(uow, case_id)
    # Being named mediator is not enough: the booking names any subject, and staff of a union
    # that never handled the case must not write into it (they cannot read it either).
    _require_visible(actor, case)
    if not case.may_keep_minutes(session_id, actor.subject, supervisor=actor.supervisor):
        raise Forbidden(
            "only the session's mediator (or a supervisor) keeps its minutes", code="not_the_mediator"
        )
    case.record_minutes(session_id, by=actor.subject)
    await uow.save(case)
    await vault.keep_minutes(uow.conn, case.case_id, session_id, command.minutes, actor.subject)
    return case


@dataclass(frozen=True)
class Cancelled:
    case: Case
    session_id: uuid.UUID
    room_id: uuid.UUID


async def cancel_session(
    uow: UnitOfWork,
    case_id: uuid.UUID,
    session_id: uuid.UUID,
    command: CancelSession,
    clock: Clock,
    *,
    vault: Vault,
    actor: Actor,
) -> Cancelled:
    """Call off one session and give its room time back, in one transaction over both streams.
    The union handling the case may cancel, and so may the union whose room it is (after an
    escalation a session booked at the station stays in the station's room)."""
    case = await _case(uow, case_id)
    _require_visible(actor, case)
    session = case.sessions.get(session_id)
    room_owner = (
        session is not None
        and actor.union_id is not None
        and session.room_id == domain.room_id(actor.union_id)
    )
    if not room_owner:
        _require_handler(actor, case)
    session = case.cancel_session(session_id, today=clock())
    assert session.room_id is not None
    await uow.lock(LockSpace.ROOM, session.room_id)
    room = await uow.load(Room, str(session.room_id))
    room.release_session(session_id=session_id, case_id=case.case_id)
    changed: list[Aggregate[str]] = [room, case] if room.pending_events else [case]
    await uow.save_all(changed)
    if command.reason:
        await vault.keep_text(uow.conn, case.case_id, case.version, "reason", command.reason)
    return Cancelled(case, session_id, session.room_id)


# --- outcomes -------------------------------------------------------------------------------------


async def reach_agreement(
    uow: UnitOfWork, case_id: uuid.UUID, command: ReachAgreement, clock: Clock, *, vault: Vault, actor: Actor
) -> Case:
    case = await _case(uow, case_id)
    _require_handler(actor, case)
    case.agree(amount=command.amount, due_on=command.due_on, today=clock())
    await uow.save(case)
    await vault.keep_text(uow.conn, case.case_id, case.version, "terms", command.terms)
    return case


async def record_fulfilment(
    uow: UnitOfWork, case_id: uuid.UUID, command: RecordFulfilment, clock: Clock, *, actor: Actor
) -> Case:
    case = await _case(uow, case_id)
    _require_handler(actor, case)
    today = clock()
    case.record_fulfilment(amount=command.amount_paid, on=command.fulfilled_on or today, today=today)
    await uow.save(case)
    return case


async def employer_refused(
    uow: UnitOfWork, case_id: uuid.UUID, command: Close, clock: Clock, *, vault: Vault, actor: Actor
) -> Case:
    case = await _case(uow, case_id)
    _require_handler(actor, case)
    today = clock()
    case.employer_refuses(on=command.on or today, today=today)
    await uow.save(case)
    if command.reason:
        await vault.keep_text(uow.conn, case.case_id, case.version, "reason", command.reason)
    return case


async def withdraw(
    uow: UnitOfWork, case_id: uuid.UUID, command: Close, clock: Clock, *, vault: Vault, actor: Actor
) -> Case:
    case = await _case(uow, case_id)
    _require_handler(actor, case)
    today = clock()
    on = command.on or today
    rooms = case.rooms_booked()
    case.withdraw(on=on, today=today)
    await uow.save(case)
    # Its sessions from that day on will not be held: each room holding one is free for other
    # cases. That is the room each was booked in, which after an escalation is still the
    # station's for the sessions booked there, not the handling union's.
    since = domain.beijing_midnight(on)
    for room_id in rooms:
        await uow.lock(LockSpace.ROOM, room_id)
        room = await uow.load(Room, str(room_id))
        room.release_case(case_id=case.case_id, since=since)
        if room.pending_events:
            await uow.save(room)
    if command.reason:
        await vault.keep_text(uow.conn, case.case_id, case.version, "reason", command.reason)
    return case


async def refer(uow: UnitOfWork, case_id: uuid.UUID, command: Refer, clock: Clock, *, actor: Actor) -> Case:
    case = await _case(uow, case_id)
    _require_handler(actor, case)
    case.refer(body=command.body, on=clock())
    await uow.save(case)
    return case


async def escalate(
    uow: UnitOfWork, case_id: uuid.UUID, command: Escalate, clock: Clock, *, vault: Vault, actor: Actor
) -> Case:
    case = await _case(uow, case_id)
    _require_handler(actor, case)
    assert case.handling_union_id is not None
    ancestors = await views.ancestors(uow.conn, case.handling_union_id)
    case.escalate(ancestors=ancestors, today=clock())
    await uow.save(case)
    await vault.keep_text(uow.conn, case.case_id, case.version, "reason", command.reason)
    return case


# --- the daily sweep ------------------------------------------------------------------------------


@dataclass
class SweepResult:
    on: date
    overdue: list[uuid.UUID] = field(default_factory=list)
    limit_near: list[uuid.UUID] = field(default_factory=list)
    emitted: int = 0


async def sweep(uow: UnitOfWork, command: Sweep, clock: Clock, *, actor: Actor | None = None) -> SweepResult:
    """Every active case past its mediation deadline or near its arbitration limit on ``on``:
    ``MediationDeadlinePassed`` / ``ArbitrationLimitNear`` once each (a second sweep adds none).

    ``on`` is today or a past day (a missed day caught up), never a day to come. Staff bound to a
    union sweep the cases their union handles now (they act on no others, and must not learn
    other stations' case ids from the answer); unbound staff, supervisors and the CronJob
    (``actor`` None) sweep every case."""
    today = clock()
    on = command.on or today
    domain.check_sweep_day(on, today=today)
    result = SweepResult(on)
    changed: list[Aggregate[str]] = []
    handling = actor.union_id if actor is not None else None
    for case_id in await views.sweep_candidates(uow.conn, on, handling_union_id=handling):
        case = await _case(uow, case_id)
        found = case.sweep(on)
        if case.pending_events:
            changed.append(case)
            result.emitted += len(case.pending_events)
        assert case.mediation_deadline is not None and case.arbitration_limit is not None
        if case.status in domain.ACTIVE and on > case.mediation_deadline:
            result.overdue.append(case.case_id)
        if "limit_near" in found or (case.limit_flagged and (case.arbitration_limit - on).days >= 0):
            result.limit_near.append(case.case_id)
    if changed:
        await uow.save_all(changed)
    return result


# --- membership.events ----------------------------------------------------------------------------


async def on_membership_event(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    """Keep the union tree and the members (inbox-deduplicated, in stream order)."""
    event = m.registry.decode(envelope.event_type, envelope.schema_version, envelope.data)
    project = MEMBERSHIP.handler(type(event))
    if project is not None:
        await project(uow.conn, event)


MEMBERSHIP_REACTIONS = {t.event_type: on_membership_event for t in m.registry.types()}
#: The membership streams those reactions read (``projections.MEMBERSHIP``): the union tree and
#: the members. Injury reports and plans are passed over without a row written.
MEMBER_STREAMS = ("Union", "Member")
