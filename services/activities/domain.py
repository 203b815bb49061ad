"""Activities: scheduling, places and a FIFO waitlist, attendance and feedback. Pure: no I/O.

The Activity aggregate is the consistency boundary of its places: every registration, cancellation
and promotion of one activity is decided against its whole state (capacity, who holds a place,
who waits in which order), so "confirmed while places last, then the waitlist in order" holds as
long as commands on one activity are applied one after another (the handlers serialise them).
The caller passes the instant ``now`` and what it knows of a member (``MemberStanding``); nothing
here reads a clock or a database.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone

from shared.aggregate import Aggregate, Conflict, InvalidInput, NotFound, applies
from shared.contracts.activities import (
    ActivityCancelled,
    ActivityChanged,
    ActivityKind,
    ActivityScheduled,
    AttendanceRecorded,
    Audience,
    CancellationReason,
    FeedbackSubmitted,
    InterestedMembersNotified,
    InterestRegistered,
    Partner,
    RegistrationCancelled,
    RegistrationConfirmed,
    RegistrationStatus,
    RegistrationWaitlisted,
    RegistrationWindowClosed,
    Session,
    VolunteerAssigned,
    VolunteerReleased,
    WaitlistPromoted,
)

#: Business dates are Beijing dates (UTC+8 all year); kept here so the domain needs no import.
_BEIJING = timezone(timedelta(hours=8))
#: An age range no family activity goes beyond.
MAX_CHILD_AGE = 17


def activity_day(moment: datetime) -> date:
    return moment.astimezone(_BEIJING).date()


def age_on(birth_date: date, day: date) -> int:
    """Completed years on ``day`` (a child born on 29 February turns a year older on 1 March)."""
    years = day.year - birth_date.year
    if (day.month, day.day) < (birth_date.month, birth_date.day):
        years -= 1
    return years


# --- who is registering -----------------------------------------------------------------------


@dataclass(frozen=True)
class MemberStanding:
    """What this service knows of a member from ``membership.events``."""

    member_id: uuid.UUID
    known: bool
    active: bool = False
    union_id: uuid.UUID | None = None


@dataclass(frozen=True)
class Registrant:
    """A member (checked against their standing) or a resident, known only by ``resident_ref``."""

    member: MemberStanding | None = None
    resident_ref: str | None = None

    def __post_init__(self) -> None:
        if (self.member is None) == (self.resident_ref is None):
            raise ValueError("a registrant is a member or a resident")

    @property
    def key(self) -> str:
        return f"member:{self.member.member_id}" if self.member else f"resident:{self.resident_ref}"


def require_active(standing: MemberStanding, field_name: str = "member_id") -> None:
    if not standing.known:
        raise Conflict(
            f"member {standing.member_id} is not known here yet (its MemberJoined is on the way); retry",
            field=field_name,
            code="member_not_known",
        )
    if not standing.active:
        raise Conflict(
            f"member {standing.member_id} has left their union", field=field_name, code="member_not_active"
        )


# --- state ------------------------------------------------------------------------------------


@dataclass
class Pool:
    """The places of the activity, or of one of its sessions, and who waits for them (in order)."""

    capacity: int
    confirmed: list[uuid.UUID] = field(default_factory=list)
    waitlist: list[uuid.UUID] = field(default_factory=list)

    @property
    def free(self) -> int:
        return self.capacity - len(self.confirmed)


@dataclass
class Registration:
    registration_id: uuid.UUID
    key: str
    member_id: uuid.UUID | None
    resident_ref: str | None
    session_id: uuid.UUID | None
    status: RegistrationStatus
    checked_in: bool = False
    feedback: bool = False


@dataclass(frozen=True)
class Outcome:
    """A registration's answer: confirmed, or waitlisted at ``position``."""

    registration_id: uuid.UUID
    status: RegistrationStatus
    waitlist_position: int | None
    session_id: uuid.UUID | None


@dataclass(frozen=True)
class SessionPlan:
    title: str
    capacity: int
    starts_at: datetime | None = None
    ends_at: datetime | None = None


class Activity(Aggregate[str]):
    stream_type = "Activity"
    ignores = (InterestedMembersNotified,)

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.kind = ActivityKind.OTHER
        self.title = ""
        self.starts_at = self.ends_at = datetime.min.replace(tzinfo=_BEIJING)
        self.venue = ""
        self.capacity = 0
        self.audience = Audience.MEMBERS
        self.child_age_min: int | None = None
        self.child_age_max: int | None = None
        self.opens_at: datetime | None = None
        self.closes_at: datetime | None = None
        self.union_id: uuid.UUID | None = None
        self.cancelled = False
        self.window_closed = False
        #: Key None: the whole activity (no sessions); else one pool per session.
        self.pools: dict[uuid.UUID | None, Pool] = {}
        self.sessions: dict[uuid.UUID, Session] = {}
        self.registrations: dict[uuid.UUID, Registration] = {}
        #: (registrant key, session) -> their live (confirmed or waitlisted) registration.
        self.live: dict[tuple[str, uuid.UUID | None], uuid.UUID] = {}
        self.volunteers: dict[uuid.UUID, str] = {}

    @property
    def activity_id(self) -> uuid.UUID:
        return uuid.UUID(self.id)

    @property
    def day(self) -> date:
        return activity_day(self.starts_at)

    def confirmed_count(self) -> int:
        return sum(len(p.confirmed) for p in self.pools.values())

    def waitlist_count(self) -> int:
        return sum(len(p.waitlist) for p in self.pools.values())

    # --- scheduling ---------------------------------------------------------------------------

    def schedule(
        self,
        *,
        kind: ActivityKind,
        title: str,
        starts_at: datetime,
        ends_at: datetime,
        venue: str,
        capacity: int,
        audience: Audience,
        child_age_min: int | None = None,
        child_age_max: int | None = None,
        registration_opens_at: datetime | None = None,
        registration_closes_at: datetime | None = None,
        union_id: uuid.UUID | None = None,
        partner: Partner | None = None,
        sessions: Sequence[tuple[uuid.UUID, SessionPlan]] = (),
        now: datetime,
    ) -> None:
        if self.exists:
            raise Conflict(f"activity {self.id} already exists", code="activity_exists")
        _check_times(starts_at, ends_at, registration_closes_at, now)
        if registration_opens_at is not None:
            closes = registration_closes_at or starts_at
            if registration_opens_at >= closes:
                raise InvalidInput(
                    "registration must open before it closes",
                    field="registration_opens_at",
                    code="registration_window_empty",
                )
        if capacity < 1:
            raise InvalidInput("capacity must be at least 1", field="capacity", code="capacity_too_small")
        if audience is Audience.MEMBER_FAMILIES:
            if child_age_min is None or child_age_max is None:
                raise InvalidInput(
                    "a member_families activity needs child_age_min and child_age_max",
                    field="child_age_min" if child_age_min is None else "child_age_max",
                    code="child_age_range_required",
                )
            if not 0 <= child_age_min <= child_age_max <= MAX_CHILD_AGE:
                raise InvalidInput(
                    f"the child age range must satisfy 0 <= min <= max <= {MAX_CHILD_AGE}",
                    field="child_age_max",
                    code="child_age_range_invalid",
                )
        elif child_age_min is not None or child_age_max is not None:
            raise InvalidInput(
                "a child age range is only for the member_families audience",
                field="child_age_min",
                code="child_age_range_not_applicable",
            )
        planned = [
            Session(
                session_id=sid,
                title=s.title,
                capacity=s.capacity,
                starts_at=s.starts_at,
                ends_at=s.ends_at,
            )
            for sid, s in sessions
        ]
        if planned and sum(s.capacity for s in planned) != capacity:
            raise InvalidInput(
                "with sessions, capacity is the sum of the sessions' capacities",
                field="capacity",
                code="capacity_not_sum_of_sessions",
            )
        for index, s in enumerate(planned):
            if s.starts_at and s.ends_at and s.ends_at <= s.starts_at:
                raise InvalidInput(
                    "a session must end after it starts",
                    field=f"sessions.{index}.ends_at",
                    code="session_ends_before_start",
                )
        self._raise(
            ActivityScheduled(
                activity_id=self.activity_id,
                kind=kind,
                title=title,
                starts_at=starts_at,
                ends_at=ends_at,
                venue=venue,
                capacity=capacity,
                audience=audience,
                child_age_min=child_age_min,
                child_age_max=child_age_max,
                registration_opens_at=registration_opens_at,
                registration_closes_at=registration_closes_at,
                union_id=union_id,
                partner=partner,
                sessions=planned,
            )
        )

    def change(
        self,
        *,
        title: str | None = None,
        starts_at: datetime | None = None,
        ends_at: datetime | None = None,
        venue: str | None = None,
        capacity: int | None = None,
        registration_closes_at: datetime | None = None,
        now: datetime,
    ) -> list[uuid.UUID]:
        """Change what may change; returns the registrations promoted by a larger capacity."""
        self._require_open_to_change(now)
        new = {
            "title": title if title is not None else self.title,
            "starts_at": starts_at or self.starts_at,
            "ends_at": ends_at or self.ends_at,
            "venue": venue if venue is not None else self.venue,
            "capacity": capacity if capacity is not None else self.capacity,
            "registration_closes_at": registration_closes_at or self.closes_at,
        }
        old = {
            "title": self.title,
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "venue": self.venue,
            "capacity": self.capacity,
            "registration_closes_at": self.closes_at,
        }
        changed = [k for k in new if new[k] != old[k]]
        if not changed:
            return []
        if {"starts_at", "ends_at", "registration_closes_at"} & set(changed):
            _check_times(new["starts_at"], new["ends_at"], new["registration_closes_at"], now)  # type: ignore[arg-type]
        if "capacity" in changed:
            if self.sessions:
                raise Conflict(
                    "an activity with sessions takes its capacity from them",
                    field="capacity",
                    code="capacity_set_by_sessions",
                )
            if new["capacity"] < self.confirmed_count():  # type: ignore[operator]
                raise Conflict(
                    f"{self.confirmed_count()} places are already confirmed; cancel registrations first",
                    field="capacity",
                    code="capacity_below_confirmed",
                )
        self._raise(
            ActivityChanged(
                activity_id=self.activity_id,
                changed=changed,
                **new,
            )
        )
        return self._promote(self.pools[None], freed_by=None, now=now) if "capacity" in changed else []

    def cancel(self, *, reason: str, now: datetime) -> list[uuid.UUID]:
        """Cancel the activity and every live registration (each registrant is told by its own
        ``RegistrationCancelled``). Returns those registrations."""
        self._require_open_to_change(now)
        live = [
            r.registration_id
            for r in self.registrations.values()
            if r.status is not RegistrationStatus.CANCELLED
        ]
        self._raise(
            ActivityCancelled(
                activity_id=self.activity_id,
                reason=reason,
                cancelled_on=activity_day(now),
                registration_ids=live,
            )
        )
        for registration_id in live:
            self._cancel(self.registrations[registration_id], CancellationReason.ACTIVITY_CANCELLED, now)
        return live

    def close_registration(self, now: datetime) -> None:
        self._require_open_to_change(now)
        if self.window_closed or now >= self.registration_deadline:
            raise Conflict("registration is already closed", code="registration_closed")
        self._raise(RegistrationWindowClosed(activity_id=self.activity_id, closed_at=now))

    @property
    def registration_deadline(self) -> datetime:
        return self.closes_at or self.starts_at

    def _require_open_to_change(self, now: datetime) -> None:
        if self.cancelled:
            raise Conflict(f"activity {self.id} is cancelled", code="activity_cancelled")
        if now >= self.ends_at:
            raise Conflict(f"activity {self.id} is over", code="activity_over")

    # --- registration -------------------------------------------------------------------------

    def register(
        self,
        registration_id: uuid.UUID,
        registrant: Registrant,
        *,
        session_id: uuid.UUID | None = None,
        children: Sequence[date] = (),
        now: datetime,
    ) -> Outcome:
        if self.cancelled:
            raise Conflict(f"activity {self.id} is cancelled", code="activity_cancelled")
        if self.opens_at is not None and now < self.opens_at:
            raise Conflict("registration is not open yet", code="registration_not_open")
        if self.window_closed or now >= self.registration_deadline:
            raise Conflict("registration is closed", code="registration_closed")
        pool = self._pool(session_id)
        if registrant.member is not None:
            require_active(registrant.member)
        elif self.audience is not Audience.RESIDENTS:
            raise Conflict(
                f"this activity is for {self.audience.value}; residents who are not members cannot register",
                field="resident",
                code="residents_not_admitted",
            )
        ages = self._children_ages(children)
        if (registrant.key, session_id) in self.live:
            raise Conflict(
                "already registered for this activity"
                + (" session" if session_id else "")
                + f" (registration {self.live[(registrant.key, session_id)]})",
                code="already_registered",
            )
        member = registrant.member
        common = {
            "activity_id": self.activity_id,
            "registration_id": registration_id,
            "member_id": member.member_id if member else None,
            "resident_ref": registrant.resident_ref,
            "member_union_id": member.union_id if member else None,
            "session_id": session_id,
            "children_ages": ages,
            "registered_at": now,
        }
        if pool.free > 0:
            self._raise(RegistrationConfirmed(**common))
            return Outcome(registration_id, RegistrationStatus.CONFIRMED, None, session_id)
        position = len(pool.waitlist) + 1
        self._raise(RegistrationWaitlisted(position=position, **common))
        return Outcome(registration_id, RegistrationStatus.WAITLISTED, position, session_id)

    def _pool(self, session_id: uuid.UUID | None) -> Pool:
        if session_id is None and self.sessions:
            raise InvalidInput(
                "this activity has sessions: name one", field="session_id", code="session_required"
            )
        pool = self.pools.get(session_id)
        if pool is None:
            raise InvalidInput(
                f"activity {self.id} has no session {session_id}", field="session_id", code="unknown_session"
            )
        return pool

    def _children_ages(self, children: Sequence[date]) -> list[int]:
        day = self.day
        for index, birth in enumerate(children):
            if birth > day:
                raise InvalidInput(
                    "a child's birth date cannot be after the activity",
                    field=f"children.{index}.birth_date",
                    code="child_not_born",
                )
        ages = [age_on(birth, day) for birth in children]
        if self.audience is not Audience.MEMBER_FAMILIES:
            return ages
        if not children:
            raise InvalidInput(
                "a family activity needs the children who come, with their birth dates",
                field="children",
                code="children_required",
            )
        low, high = self.child_age_min or 0, self.child_age_max or MAX_CHILD_AGE
        for index, age in enumerate(ages):
            if not low <= age <= high:
                raise Conflict(
                    f"children must be {low} to {high} years old on {day.isoformat()}; this child is {age}",
                    field=f"children.{index}.birth_date",
                    code="child_age_out_of_range",
                )
        return ages

    def registration(self, registration_id: uuid.UUID) -> Registration:
        found = self.registrations.get(registration_id)
        if found is None:
            raise NotFound(f"registration {registration_id} not found on activity {self.id}")
        return found

    def cancel_registration(
        self, registration_id: uuid.UUID, *, reason: CancellationReason, now: datetime
    ) -> uuid.UUID | None:
        """Cancel one registration; a freed place goes to the first in line, in the same
        transaction. Returns the promoted registration, if any."""
        reg = self.registration(registration_id)
        if reg.status is RegistrationStatus.CANCELLED:
            raise Conflict(
                f"registration {registration_id} is already cancelled", code="registration_cancelled"
            )
        if reg.checked_in:
            raise Conflict(f"registration {registration_id} has attended", code="already_attended")
        was_confirmed = reg.status is RegistrationStatus.CONFIRMED
        self._cancel(reg, reason, now)
        if not was_confirmed or self.cancelled or now >= self.ends_at:
            return None
        promoted = self._promote(self.pools[reg.session_id], freed_by=registration_id, now=now)
        return promoted[0] if promoted else None

    def live_registrations_of(self, member_id: uuid.UUID) -> list[uuid.UUID]:
        return [
            r.registration_id
            for r in self.registrations.values()
            if r.member_id == member_id and r.status is not RegistrationStatus.CANCELLED and not r.checked_in
        ]

    def _cancel(self, reg: Registration, reason: CancellationReason, now: datetime) -> None:
        self._raise(
            RegistrationCancelled(
                activity_id=self.activity_id,
                registration_id=reg.registration_id,
                member_id=reg.member_id,
                resident_ref=reg.resident_ref,
                session_id=reg.session_id,
                previous_status=reg.status,
                reason=reason,
                cancelled_at=now,
            )
        )

    def _promote(self, pool: Pool, *, freed_by: uuid.UUID | None, now: datetime) -> list[uuid.UUID]:
        promoted: list[uuid.UUID] = []
        while pool.free > 0 and pool.waitlist:
            reg = self.registrations[pool.waitlist[0]]
            self._raise(
                WaitlistPromoted(
                    activity_id=self.activity_id,
                    registration_id=reg.registration_id,
                    member_id=reg.member_id,
                    resident_ref=reg.resident_ref,
                    session_id=reg.session_id,
                    freed_by=freed_by,
                    promoted_at=now,
                )
            )
            promoted.append(reg.registration_id)
        return promoted

    def waitlist_position(self, registration_id: uuid.UUID) -> int | None:
        reg = self.registration(registration_id)
        pool = self.pools[reg.session_id]
        return pool.waitlist.index(registration_id) + 1 if registration_id in pool.waitlist else None

    # --- the day and after --------------------------------------------------------------------

    def check_in(self, registration_id: uuid.UUID, now: datetime) -> None:
        reg = self.registration(registration_id)
        if self.cancelled:
            raise Conflict(f"activity {self.id} is cancelled", code="activity_cancelled")
        if reg.status is not RegistrationStatus.CONFIRMED:
            raise Conflict(
                f"only a confirmed registration can check in; this one is {reg.status.value}",
                code="registration_not_confirmed",
            )
        if reg.checked_in:
            raise Conflict("already checked in", code="already_checked_in")
        today = activity_day(now)
        if not activity_day(self.starts_at) <= today <= activity_day(self.ends_at):
            raise Conflict(
                f"check-in is on the day of the activity ({self.day.isoformat()})", code="not_activity_day"
            )
        self._raise(
            AttendanceRecorded(
                activity_id=self.activity_id,
                registration_id=registration_id,
                member_id=reg.member_id,
                resident_ref=reg.resident_ref,
                session_id=reg.session_id,
                checked_in_at=now,
            )
        )

    def submit_feedback(
        self, registration_id: uuid.UUID, *, rating: int, comment: str | None, now: datetime
    ) -> None:
        reg = self.registration(registration_id)
        if not reg.checked_in:
            raise Conflict("feedback comes from those who attended", code="not_attended")
        if reg.feedback:
            raise Conflict("feedback was already given for this registration", code="feedback_already_given")
        if not 1 <= rating <= 5:
            raise InvalidInput("rating is 1 to 5", field="rating", code="rating_out_of_range")
        self._raise(
            FeedbackSubmitted(
                activity_id=self.activity_id,
                registration_id=registration_id,
                member_id=reg.member_id,
                rating=rating,
                comment=comment,
                submitted_at=now,
            )
        )

    # --- volunteers and interest ----------------------------------------------------------------

    def assign_volunteer(self, standing: MemberStanding, *, role: str, now: datetime) -> None:
        self._require_open_to_change(now)
        require_active(standing)
        if standing.member_id in self.volunteers:
            raise Conflict(
                "this member already volunteers here", field="member_id", code="already_volunteering"
            )
        self._raise(
            VolunteerAssigned(
                activity_id=self.activity_id,
                member_id=standing.member_id,
                role=role,
                assigned_on=activity_day(now),
            )
        )

    def release_volunteer(self, member_id: uuid.UUID, *, now: datetime) -> None:
        if member_id not in self.volunteers:
            raise NotFound(f"member {member_id} does not volunteer at activity {self.id}")
        self._raise(
            VolunteerReleased(
                activity_id=self.activity_id, member_id=member_id, released_on=activity_day(now)
            )
        )

    def notify_interested(self, interests: list[tuple[uuid.UUID, uuid.UUID]]) -> None:
        """``interests``: (interest_id, member_id) of the open interests in this kind."""
        if not interests:
            return
        self._raise(
            InterestedMembersNotified(
                activity_id=self.activity_id,
                kind=self.kind,
                interest_ids=[i for i, _ in interests],
                member_ids=list(dict.fromkeys(m for _, m in interests)),
            )
        )

    # --- state changes ------------------------------------------------------------------------

    @applies(ActivityScheduled)
    def _scheduled(self, e: ActivityScheduled) -> None:
        self.kind, self.title, self.venue, self.audience = e.kind, e.title, e.venue, e.audience
        self.starts_at, self.ends_at, self.capacity = e.starts_at, e.ends_at, e.capacity
        self.child_age_min, self.child_age_max = e.child_age_min, e.child_age_max
        self.opens_at, self.closes_at, self.union_id = (
            e.registration_opens_at,
            e.registration_closes_at,
            e.union_id,
        )
        self.sessions = {s.session_id: s for s in e.sessions}
        if e.sessions:
            self.pools = {s.session_id: Pool(s.capacity) for s in e.sessions}
        else:
            self.pools = {None: Pool(e.capacity)}

    @applies(ActivityChanged)
    def _changed(self, e: ActivityChanged) -> None:
        self.title, self.venue, self.starts_at, self.ends_at = e.title, e.venue, e.starts_at, e.ends_at
        self.closes_at = e.registration_closes_at
        self.capacity = e.capacity
        if None in self.pools:
            self.pools[None].capacity = e.capacity

    @applies(ActivityCancelled)
    def _cancelled(self, e: ActivityCancelled) -> None:
        self.cancelled = True

    @applies(RegistrationWindowClosed)
    def _window_closed(self, e: RegistrationWindowClosed) -> None:
        self.window_closed = True

    @applies(RegistrationConfirmed, RegistrationWaitlisted)
    def _registered(self, e: RegistrationConfirmed | RegistrationWaitlisted) -> None:
        key = f"member:{e.member_id}" if e.member_id else f"resident:{e.resident_ref}"
        confirmed = isinstance(e, RegistrationConfirmed)
        status = RegistrationStatus.CONFIRMED if confirmed else RegistrationStatus.WAITLISTED
        self.registrations[e.registration_id] = Registration(
            e.registration_id, key, e.member_id, e.resident_ref, e.session_id, status
        )
        pool = self.pools[e.session_id]
        (pool.confirmed if confirmed else pool.waitlist).append(e.registration_id)
        self.live[(key, e.session_id)] = e.registration_id

    @applies(RegistrationCancelled)
    def _registration_cancelled(self, e: RegistrationCancelled) -> None:
        reg = self.registrations[e.registration_id]
        pool = self.pools[reg.session_id]
        for queue in (pool.confirmed, pool.waitlist):
            if e.registration_id in queue:
                queue.remove(e.registration_id)
        reg.status = RegistrationStatus.CANCELLED
        self.live.pop((reg.key, reg.session_id), None)

    @applies(WaitlistPromoted)
    def _promoted(self, e: WaitlistPromoted) -> None:
        reg = self.registrations[e.registration_id]
        pool = self.pools[reg.session_id]
        pool.waitlist.remove(e.registration_id)
        pool.confirmed.append(e.registration_id)
        reg.status = RegistrationStatus.CONFIRMED

    @applies(AttendanceRecorded)
    def _attended(self, e: AttendanceRecorded) -> None:
        self.registrations[e.registration_id].checked_in = True

    @applies(FeedbackSubmitted)
    def _feedback(self, e: FeedbackSubmitted) -> None:
        self.registrations[e.registration_id].feedback = True

    @applies(VolunteerAssigned)
    def _volunteer(self, e: VolunteerAssigned) -> None:
        self.volunteers[e.member_id] = e.role

    @applies(VolunteerReleased)
    def _volunteer_released(self, e: VolunteerReleased) -> None:
        self.volunteers.pop(e.member_id, None)


def _check_times(starts_at: datetime, ends_at: datetime, closes_at: datetime | None, now: datetime) -> None:
    if ends_at <= starts_at:
        raise InvalidInput("an activity must end after it starts", field="ends_at", code="ends_before_start")
    if starts_at <= now:
        raise InvalidInput("an activity is scheduled in the future", field="starts_at", code="starts_in_past")
    if closes_at is not None and closes_at > starts_at:
        raise InvalidInput(
            "registration closes by the time the activity starts",
            field="registration_closes_at",
            code="registration_closes_after_start",
        )


class Interest(Aggregate[str]):
    """A member's wish to hear of the next activity of a kind."""

    stream_type = "Interest"

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.member_id: uuid.UUID | None = None
        self.kind: ActivityKind | None = None

    def register(
        self, standing: MemberStanding, kind: ActivityKind, *, already_open: bool, today: date
    ) -> None:
        if self.exists:
            raise Conflict(f"interest {self.id} already exists", code="interest_exists")
        require_active(standing)
        if already_open:
            raise Conflict(
                f"member {standing.member_id} already waits to hear of the next {kind.value} activity",
                field="kind",
                code="interest_already_registered",
            )
        self._raise(
            InterestRegistered(
                interest_id=uuid.UUID(self.id), member_id=standing.member_id, kind=kind, registered_on=today
            )
        )

    @applies(InterestRegistered)
    def _registered(self, e: InterestRegistered) -> None:
        self.member_id, self.kind = e.member_id, e.kind
