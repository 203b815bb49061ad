"""Rules of labour-dispute mediation at the union service stations. Pure: no I/O, no clock.

- A case is received at a station (a ``street`` union) and is handled by one union at a time;
  its deadlines are legal periods (``periods``) counted on China's calendar (``calendar``).
- Sessions take place in the handling union's mediation room, one per union: two sessions never
  overlap in it (the ``Room`` aggregate decides, its stream version serialises bookings).
- Outcomes: agreement (then fulfilment), employer refused, withdrawn, referred to arbitration, or
  escalated one tier up the union tree (street -> district -> municipal).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from enum import StrEnum

from services.mediation import calendar, periods
from shared.aggregate import Aggregate, Conflict, InvalidInput, NotFound, applies
from shared.contracts.mediation import (
    AgreementFulfilled,
    AgreementReached,
    ArbitrationLimitNear,
    CaseEscalated,
    CaseReceived,
    CaseReferredToArbitration,
    CaseWithdrawn,
    Category,
    EmployerRefused,
    MediationDeadlinePassed,
    MediationSessionScheduled,
    MinutesRecorded,
    Party,
    ReleaseCause,
    RoomBooked,
    RoomReleased,
    SessionCancelled,
    Tier,
)

#: Ids derived from names (a station's room) live under this namespace.
NAMESPACE = uuid.UUID("5b0f3c2e-8a51-4f0e-9d7c-6f3e2a1b0c99")
#: The longest session one booking may hold.
MAX_SESSION = timedelta(hours=12)
#: How far ahead a session may be booked: mediation runs 15 days a tier (45 over all three) and
#: the arbitration limit is one year, so a session more than a year off is a typing error. This
#: also keeps every session's Beijing day well inside the calendar (``9999-12-31T16:00Z`` is in
#: the year 10000 in Beijing).
MAX_SESSION_AHEAD = timedelta(days=366)
#: The earliest receipt date: the Labour Dispute Mediation and Arbitration Law, whose periods
#: (arts. 14 and 27) this service counts, took effect on 1 May 2008. A case "received" before it
#: is a typing error, not a case to number and sweep.
EARLIEST_RECEIPT = date(2008, 5, 1)
#: Business dates are Beijing dates (UTC+8 all year, no daylight saving): the domain needs the
#: offset to tell the day of a session, and takes no clock.
_BEIJING = timezone(timedelta(hours=8))


def beijing_day(moment: datetime) -> date:
    """The Beijing date of an instant (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(_BEIJING).date()


def beijing_midnight(day: date) -> datetime:
    """The first instant of ``day`` in Beijing. Comparing an instant with it tells whether the
    instant's Beijing day is before ``day`` without computing that day, which overflows for the
    last hours of 9999-12-31 in UTC."""
    return datetime.combine(day, time.min, tzinfo=_BEIJING)


def check_day(on: date, *, since: date, today: date, field: str, what: str) -> None:
    """A business date that records something that happened: not before ``since`` (the case's
    receipt), not after today. Refused naming ``field``."""
    if on > today:
        raise InvalidInput(f"{what} cannot be dated after today ({today.isoformat()})", field=field)
    if on < since:
        raise InvalidInput(
            f"{what} cannot be dated before the case was received ({since.isoformat()})", field=field
        )


def check_sweep_day(on: date, *, today: date) -> None:
    """A sweep detects what has passed by ``on``: a day that has not come yet would report
    deadlines before they pass (and, once per deadline, never again when they do)."""
    if on > today:
        raise InvalidInput(f"the sweep cannot run for a day after today ({today.isoformat()})", field="on")


def check_session_window(starts_at: datetime, ends_at: datetime, *, today: date) -> None:
    """Sessions start at most ``MAX_SESSION_AHEAD`` after the start of today (Beijing)."""
    latest = beijing_midnight(today) + MAX_SESSION_AHEAD
    if starts_at > latest:
        raise InvalidInput(
            f"a session starts at most {MAX_SESSION_AHEAD.days} days ahead (before {latest.isoformat()})",
            field="starts_at",
        )
    if ends_at > latest + MAX_SESSION:
        raise InvalidInput(
            f"a session ends at most {MAX_SESSION_AHEAD.days} days ahead (before {latest.isoformat()})",
            field="ends_at",
        )


class Status(StrEnum):
    OPEN = "open"
    AGREED = "agreed"
    REFERRED = "referred_to_arbitration"
    ESCALATED = "escalated"
    WITHDRAWN = "withdrawn"


#: Still in mediation at some tier: sessions, outcomes and the sweep apply.
ACTIVE = frozenset({Status.OPEN, Status.ESCALATED})


@dataclass(frozen=True)
class UnionNode:
    """A union of the tree as this service knows it (from ``UnionRegistered``)."""

    union_id: uuid.UUID
    level: str
    parent_id: uuid.UUID | None


def tier_of(level: str) -> Tier | None:
    try:
        return Tier(level)
    except ValueError:
        return None  # grassroots unions are no tier of the service system


def higher_tier(current: Tier, ancestors: list[UnionNode]) -> UnionNode:
    """The nearest ancestor (``ancestors`` parent first) at a tier above ``current``."""
    order = list(Tier)
    if current is Tier.MUNICIPAL:
        raise Conflict("the case is at the municipal tier: there is no higher tier", code="no_higher_tier")
    for node in ancestors:
        tier = tier_of(node.level)
        if tier is not None and order.index(tier) > order.index(current):
            return node
    raise Conflict(
        "no union of a higher tier is known above the handling union (the union tree has not "
        "arrived from membership yet, or it has no such union)",
        code="no_higher_tier",
    )


def case_number(prefix: str, year: int, seq: int) -> str:
    """``SY-2026-0042``: the station's prefix, the year of receipt, the station's count that year."""
    return f"{prefix}-{year}-{seq:04d}"


def station_prefix(name: str, taken: frozenset[str] | set[str] = frozenset()) -> str:
    """The default case-number prefix of a station: the initials of its name's first two words
    (``Shi Yuan Street`` -> ``SY``); staff may set another (``PUT /v1/stations/{id}``).

    A prefix belongs to one station (case numbers are counted per station, so two stations with
    one prefix would issue one number twice): when the initials are ``taken`` by another station
    a letter is added (``SYA``, ``SYB``, ... then ``SYAA``, ...)."""
    words = [w for w in "".join(c if c.isascii() and c.isalnum() else " " for c in name).split() if w]
    initials = "".join(w[0] for w in words[:2]).upper()
    base = initials if len(initials) == 2 else "MC"
    letters = [chr(c) for c in range(ord("A"), ord("Z") + 1)]
    candidates = [base, *(base + a for a in letters), *(base + a + b for a in letters for b in letters)]
    for candidate in candidates:
        if candidate not in taken:
            return candidate
    raise Conflict(
        f"every default prefix from {base} is taken: set one (PUT /v1/stations/{{id}})",
        field="case_prefix",
        code="prefix_taken",
    )


@dataclass(frozen=True)
class Deadlines:
    mediation_deadline: date
    arbitration_limit: date


def deadlines(received_on: date, learned_on: date) -> Deadlines:
    return Deadlines(
        periods.MEDIATION.last_day(received_on),
        periods.ARBITRATION.last_day(learned_on),
    )


@dataclass(frozen=True)
class Session:
    session_id: uuid.UUID
    starts_at: datetime
    ends_at: datetime
    mediator: str
    minutes: bool = False
    #: The room it was booked in (the handling union's at the time: an escalation moves the
    #: case, not its booked sessions).
    room_id: uuid.UUID | None = None
    cancelled: bool = False


class Case(Aggregate[str]):
    stream_type = "Case"
    ignores = (RoomBooked, RoomReleased)  # the room's stream

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.status = Status.OPEN
        self.tier = Tier.STREET
        self.case_number = ""
        self.station_union_id: uuid.UUID | None = None
        self.handling_union_id: uuid.UUID | None = None
        #: Every union that has handled the case (the station, then each tier it was escalated
        #: to): their staff see it, so to the staff of any other union it does not exist.
        self.handled_by: list[uuid.UUID] = []
        self.received_on: date | None = None
        self.learned_on: date | None = None
        self.mediation_deadline: date | None = None
        self.arbitration_limit: date | None = None
        self.deadline_reported: set[date] = set()
        self.limit_flagged = False
        self.employer_refused = False
        self.agreed_amount: Decimal | None = None
        self.fulfilled = False
        self.sessions: dict[uuid.UUID, Session] = {}

    @property
    def case_id(self) -> uuid.UUID:
        return uuid.UUID(self.id)

    # --- commands -----------------------------------------------------------------------------

    def receive(
        self,
        *,
        number: str,
        station: UnionNode | None,
        party: Party,
        member_id: uuid.UUID | None,
        category: Category,
        amount: Decimal | None,
        learned_on: date,
        received_on: date,
        today: date,
    ) -> None:
        if self.exists:
            raise Conflict(f"case {self.id} already exists", code="case_exists")
        if station is None:
            raise Conflict(
                "the receiving union is not known here yet (its UnionRegistered is on the way); retry",
                field="union_id",
                code="union_not_known",
            )
        if station.level != Tier.STREET:
            raise InvalidInput(
                f"cases are received at a street service station, not at a {station.level} union",
                field="union_id",
                code="not_a_station",
            )
        if received_on > today:
            raise InvalidInput("a case cannot be received in the future", field="received_on")
        if received_on < EARLIEST_RECEIPT:
            raise InvalidInput(
                f"a case is received on or after {EARLIEST_RECEIPT.isoformat()}, when the Labour Dispute "
                "Mediation and Arbitration Law whose periods this service counts took effect",
                field="received_on",
            )
        if learned_on > received_on:
            raise InvalidInput(
                "the worker cannot have learned of the infringement after the case was received",
                field="learned_on",
            )
        due = deadlines(received_on, learned_on)
        self._raise(
            CaseReceived(
                case_id=self.case_id,
                case_number=number,
                station_union_id=station.union_id,
                party=party,
                member_id=member_id,
                category=category,
                amount_claimed=amount,
                learned_on=learned_on,
                received_on=received_on,
                mediation_deadline=due.mediation_deadline,
                arbitration_limit=due.arbitration_limit,
            )
        )

    def _require_active(self, what: str) -> None:
        if self.status not in ACTIVE:
            raise Conflict(f"the case is {self.status}: cannot {what}", code="case_closed")

    def schedule_session(
        self,
        *,
        session_id: uuid.UUID,
        room_id: uuid.UUID,
        starts_at: datetime,
        ends_at: datetime,
        mediator: str,
        parties_present: list[str],
        today: date,
    ) -> None:
        self._require_active("schedule a session")
        check_session_window(starts_at, ends_at, today=today)
        self._raise(
            MediationSessionScheduled(
                case_id=self.case_id,
                session_id=session_id,
                room_id=room_id,
                starts_at=starts_at,
                ends_at=ends_at,
                mediator=mediator,
                parties_present=parties_present,
            )
        )

    def session(self, session_id: uuid.UUID) -> Session:
        found = self.sessions.get(session_id)
        if found is None:
            raise Conflict(f"session {session_id} is not a session of this case", code="session_not_found")
        return found

    def may_keep_minutes(self, session_id: uuid.UUID, subject: str, *, supervisor: bool) -> bool:
        """Minutes are the session's mediator's (and a supervisor's), like counselling notes."""
        return supervisor or self.session(session_id).mediator == subject

    def record_minutes(self, session_id: uuid.UUID, *, by: str) -> None:
        session = self.session(session_id)
        if session.cancelled:
            raise Conflict("this session was cancelled: it was not held", code="session_cancelled")
        if session.minutes:
            raise Conflict("this session's minutes are already recorded", code="minutes_recorded")
        self._raise(MinutesRecorded(case_id=self.case_id, session_id=session_id, recorded_by=by))

    def cancel_session(self, session_id: uuid.UUID, *, today: date) -> Session:
        """Call off one session before it is held. Held means its minutes are recorded or its
        day (Beijing) is past: the same line a withdrawal draws (sessions from the day of
        withdrawal on are released). A withdrawn case's sessions were released with it."""
        session = self.sessions.get(session_id)
        if session is None:
            raise NotFound(f"session {session_id} not found")
        if session.cancelled:
            raise Conflict("this session is already cancelled", code="session_cancelled")
        if session.minutes or session.starts_at < beijing_midnight(today):
            raise Conflict("this session has already been held", code="session_held")
        if self.status is Status.WITHDRAWN:
            raise Conflict("the case is withdrawn: its sessions were released with it", code="case_closed")
        assert session.room_id is not None
        self._raise(
            SessionCancelled(
                case_id=self.case_id, session_id=session_id, room_id=session.room_id, cancelled_on=today
            )
        )
        return session

    def rooms_booked(self) -> list[uuid.UUID]:
        """The rooms holding this case's sessions that are not cancelled, in a fixed order (the
        order their locks are taken in)."""
        return sorted(
            {s.room_id for s in self.sessions.values() if s.room_id is not None and not s.cancelled},
            key=str,
        )

    def agree(self, *, amount: Decimal, due_on: date, today: date) -> None:
        self._require_active("record an agreement")
        assert self.handling_union_id is not None and self.received_on is not None
        if due_on < today:
            raise InvalidInput("the agreement cannot fall due before it is made", field="due_on")
        self._raise(
            AgreementReached(
                case_id=self.case_id,
                amount=amount,
                due_on=due_on,
                agreed_on=today,
                tier=self.tier,
                handling_union_id=self.handling_union_id,
            )
        )

    def _check_day(self, on: date, *, today: date, field: str, what: str) -> None:
        assert self.received_on is not None
        check_day(on, since=self.received_on, today=today, field=field, what=what)

    def record_fulfilment(self, *, amount: Decimal, on: date, today: date) -> None:
        if self.status is not Status.AGREED:
            raise Conflict("only an agreement can be fulfilled", code="not_agreed")
        if self.fulfilled:
            raise Conflict("the agreement's fulfilment is already recorded", code="already_fulfilled")
        self._check_day(on, today=today, field="fulfilled_on", what="a fulfilment")
        self._raise(AgreementFulfilled(case_id=self.case_id, amount_paid=amount, fulfilled_on=on))

    def employer_refuses(self, *, on: date, today: date) -> None:
        self._require_active("record a refusal")
        if self.employer_refused:
            raise Conflict("the employer's refusal is already recorded", code="already_refused")
        self._check_day(on, today=today, field="on", what="a refusal")
        self._raise(EmployerRefused(case_id=self.case_id, refused_on=on))

    def withdraw(self, *, on: date, today: date) -> None:
        self._require_active("withdraw it")
        self._check_day(on, today=today, field="on", what="a withdrawal")
        self._raise(CaseWithdrawn(case_id=self.case_id, withdrawn_on=on))

    def refer(self, *, body: str, on: date) -> None:
        self._require_active("refer it")
        assert self.handling_union_id is not None
        self._raise(
            CaseReferredToArbitration(
                case_id=self.case_id,
                body=body,
                referred_on=on,
                tier=self.tier,
                handling_union_id=self.handling_union_id,
            )
        )

    def escalate(self, *, ancestors: list[UnionNode], today: date) -> UnionNode:
        self._require_active("escalate it")
        assert self.handling_union_id is not None
        target = higher_tier(self.tier, ancestors)
        to_tier = tier_of(target.level)
        assert to_tier is not None
        self._raise(
            CaseEscalated(
                case_id=self.case_id,
                from_tier=self.tier,
                from_union_id=self.handling_union_id,
                to_tier=to_tier,
                to_union_id=target.union_id,
                escalated_on=today,
                mediation_deadline=periods.MEDIATION.last_day(today),
            )
        )
        return target

    def sweep(self, on: date) -> list[str]:
        """What the daily sweep finds on ``on``: ``overdue`` (past its mediation deadline, once per
        deadline) and ``limit_near`` (its arbitration limit within the warning, once)."""
        found: list[str] = []
        if self.status not in ACTIVE:
            return found
        assert self.mediation_deadline is not None and self.arbitration_limit is not None
        assert self.handling_union_id is not None
        if on > self.mediation_deadline and self.mediation_deadline not in self.deadline_reported:
            self._raise(
                MediationDeadlinePassed(
                    case_id=self.case_id,
                    mediation_deadline=self.mediation_deadline,
                    detected_on=on,
                    tier=self.tier,
                    handling_union_id=self.handling_union_id,
                )
            )
            found.append("overdue")
        days_left = (self.arbitration_limit - on).days
        if not self.limit_flagged and 0 <= days_left <= periods.LIMIT_WARNING_DAYS:
            self._raise(
                ArbitrationLimitNear(
                    case_id=self.case_id,
                    arbitration_limit=self.arbitration_limit,
                    detected_on=on,
                    days_left=days_left,
                )
            )
            found.append("limit_near")
        return found

    # --- state --------------------------------------------------------------------------------

    @applies(CaseReceived)
    def _received(self, e: CaseReceived) -> None:
        self.case_number = e.case_number
        self.station_union_id = self.handling_union_id = e.station_union_id
        self.handled_by = [e.station_union_id]
        self.received_on, self.learned_on = e.received_on, e.learned_on
        self.mediation_deadline, self.arbitration_limit = e.mediation_deadline, e.arbitration_limit

    @applies(MediationSessionScheduled)
    def _scheduled(self, e: MediationSessionScheduled) -> None:
        self.sessions[e.session_id] = Session(
            e.session_id, e.starts_at, e.ends_at, e.mediator, room_id=e.room_id
        )

    @applies(MinutesRecorded)
    def _minutes(self, e: MinutesRecorded) -> None:
        self.sessions[e.session_id] = replace(self.sessions[e.session_id], minutes=True)

    @applies(SessionCancelled)
    def _session_cancelled(self, e: SessionCancelled) -> None:
        self.sessions[e.session_id] = replace(self.sessions[e.session_id], cancelled=True)

    @applies(AgreementReached)
    def _agreed(self, e: AgreementReached) -> None:
        self.status, self.agreed_amount = Status.AGREED, e.amount

    @applies(AgreementFulfilled)
    def _fulfilled(self, e: AgreementFulfilled) -> None:
        self.fulfilled = True

    @applies(EmployerRefused)
    def _refused(self, e: EmployerRefused) -> None:
        self.employer_refused = True

    @applies(CaseWithdrawn)
    def _withdrawn(self, e: CaseWithdrawn) -> None:
        self.status = Status.WITHDRAWN

    @applies(CaseReferredToArbitration)
    def _referred(self, e: CaseReferredToArbitration) -> None:
        self.status = Status.REFERRED

    @applies(CaseEscalated)
    def _escalated(self, e: CaseEscalated) -> None:
        self.status, self.tier, self.handling_union_id = Status.ESCALATED, e.to_tier, e.to_union_id
        if e.to_union_id not in self.handled_by:
            self.handled_by.append(e.to_union_id)
        self.mediation_deadline = e.mediation_deadline
        self.employer_refused = False  # the higher tier mediates afresh

    @applies(MediationDeadlinePassed)
    def _deadline_passed(self, e: MediationDeadlinePassed) -> None:
        self.deadline_reported.add(e.mediation_deadline)

    @applies(ArbitrationLimitNear)
    def _limit_near(self, e: ArbitrationLimitNear) -> None:
        self.limit_flagged = True


def room_id(union_id: uuid.UUID) -> uuid.UUID:
    """The mediation room of a union: one per union, so its id is derived from the union's."""
    return uuid.uuid5(NAMESPACE, f"mediation-room:{union_id}")


class Room(Aggregate[str]):
    """A union's mediation room. Every booking appends to this one stream, so two concurrent
    bookings cannot both pass the overlap check: the second append fails on the stream version
    and is decided again on fresh state."""

    stream_type = "Room"
    ignores = (
        CaseReceived,
        MediationSessionScheduled,
        SessionCancelled,
        MinutesRecorded,
        AgreementReached,
        AgreementFulfilled,
        EmployerRefused,
        CaseWithdrawn,
        CaseReferredToArbitration,
        CaseEscalated,
        MediationDeadlinePassed,
        ArbitrationLimitNear,
    )  # the cases' streams

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.bookings: dict[uuid.UUID, tuple[datetime, datetime]] = {}
        self.cases: dict[uuid.UUID, uuid.UUID] = {}
        #: The union whose room this is (from its bookings).
        self.union_id: uuid.UUID | None = None

    def book(
        self,
        *,
        union_id: uuid.UUID,
        session_id: uuid.UUID,
        case_id: uuid.UUID,
        starts_at: datetime,
        ends_at: datetime,
    ) -> None:
        if ends_at <= starts_at:
            raise InvalidInput("a session ends after it starts", field="ends_at")
        if ends_at - starts_at > MAX_SESSION:
            raise InvalidInput("a session lasts at most 12 hours", field="ends_at")
        for other, (start, end) in self.bookings.items():
            if starts_at < end and start < ends_at:  # half-open intervals: back to back is fine
                raise Conflict(
                    f"the mediation room is booked from {start.isoformat()} to {end.isoformat()} "
                    f"(session {other})",
                    code="room_taken",
                )
        self._raise(
            RoomBooked(
                room_id=uuid.UUID(self.id),
                station_union_id=union_id,
                session_id=session_id,
                case_id=case_id,
                starts_at=starts_at,
                ends_at=ends_at,
            )
        )

    def release_case(self, *, case_id: uuid.UUID, since: datetime) -> None:
        """A withdrawn case gives up its sessions in this room that start at ``since`` (the start
        of the day of withdrawal) or later; the ones already held stay in the room's history. The
        room may be another union's than the one handling the case now: a session booked at the
        station stays in the station's room when the case is escalated."""
        for session_id, (start, _end) in list(self.bookings.items()):
            if self.cases.get(session_id) == case_id and start >= since and self.union_id is not None:
                self._raise(
                    RoomReleased(
                        room_id=uuid.UUID(self.id),
                        station_union_id=self.union_id,
                        session_id=session_id,
                        case_id=case_id,
                        cause=ReleaseCause.CASE_WITHDRAWN,
                    )
                )

    def release_session(self, *, session_id: uuid.UUID, case_id: uuid.UUID) -> None:
        """A cancelled session gives its time back. Nothing to release when the booking is gone
        already (the case's stream decides whether a cancellation is allowed)."""
        if self.cases.get(session_id) == case_id and self.union_id is not None:
            self._raise(
                RoomReleased(
                    room_id=uuid.UUID(self.id),
                    station_union_id=self.union_id,
                    session_id=session_id,
                    case_id=case_id,
                    cause=ReleaseCause.SESSION_CANCELLED,
                )
            )

    @applies(RoomBooked)
    def _booked(self, e: RoomBooked) -> None:
        self.bookings[e.session_id] = (e.starts_at, e.ends_at)
        self.cases[e.session_id] = e.case_id
        self.union_id = e.station_union_id

    @applies(RoomReleased)
    def _released(self, e: RoomReleased) -> None:
        self.bookings.pop(e.session_id, None)
        self.cases.pop(e.session_id, None)


def calendar_covers(*days: date) -> bool:
    """Whether every day's year is in the holiday calendar (else only weekends were counted)."""
    return all(calendar.covers(d) for d in days)
