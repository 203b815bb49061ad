"""Membership rules, all of them, in one place. Pure: no I/O, no framework, no database, no clock.

Whoever calls in passes what a rule needs: the plan (a ``Plan`` value read from the catalogue
table), the union (an aggregate loaded from its stream) and *today* (the business date in
Beijing). Commands check their rules against current state and ``_raise`` events; state changes
only in methods marked ``@applies(EventClass)``, so replaying a stream rebuilds exactly the same state.

Errors: ``InvalidInput(field=...)`` (422) when a value given is unacceptable, ``Conflict`` (409)
when the command does not fit the aggregate's current state.

Aggregates and their streams:
- ``Union``       stream "Union",        id = union_id   - the organisation tree
- ``Member``      stream "Member",       id = member_id  - membership, Jing card, enrolments
- ``InjuryReport`` stream "InjuryReport", id = report_id
- ``CataloguePlan`` stream "Plan",       id = plan code  - edits of the plan catalogue
"""

from __future__ import annotations

import calendar
import re
import unicodedata
import uuid
from dataclasses import dataclass, replace
from datetime import date, timedelta
from decimal import Decimal

from shared.aggregate import Aggregate, Conflict, InvalidInput, NotFound, applies
from shared.contracts.common import Benefit, Gender, InjurySeverity
from shared.contracts.membership import (
    CardCancelled,
    CardIssued,
    EnrollmentCancelled,
    InjuryReported,
    LeaveReason,
    MemberJoined,
    MemberLeft,
    MemberPhoneChanged,
    MemberTransferred,
    PlanDefined,
    PlanEnrolled,
    UnionLevel,
    UnionRegistered,
)
from shared.contracts.plans import Plan

# --- Limits that are not plan data ------------------------------------------------------------

#: No business date before this is plausible (typo guard: "0024-05-01").
EARLIEST_DATE = date(1900, 1, 1)
#: PRC Labour Law: nobody under 16 may be employed, so nobody under 16 is a worker-member.
MIN_MEMBER_AGE = 16
#: Enrolments are made for the current or the next term, not further ahead (typo guard).
MAX_ENROLMENT_LEAD = timedelta(days=366)

#: The organisation tree: each level sits directly under the one named here.
PARENT_LEVEL: dict[UnionLevel, UnionLevel | None] = {
    UnionLevel.MUNICIPAL: None,
    UnionLevel.DISTRICT: UnionLevel.MUNICIPAL,
    UnionLevel.STREET: UnionLevel.DISTRICT,
    UnionLevel.GRASSROOTS: UnionLevel.STREET,
}

# --- Value rules ------------------------------------------------------------------------------
# Messages never echo the value: it may be a national ID, a phone or a card number.

_NATIONAL_ID = re.compile(r"^[0-9]{17}[0-9X]$")
_PHONE = re.compile(r"^\+?[0-9]{7,15}$")
_CARD_NUMBER = re.compile(r"^[0-9]{16,19}$")
_SEPARATORS = re.compile(r"[\s\-()]")


#: GB 11643 (ISO 7064 MOD 11-2): weights of the first 17 digits, and the check character for
#: each remainder of their weighted sum modulo 11.
_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def parse_national_id(raw: str) -> str:
    """Resident identity card number (GB 11643): 18 characters, 17 digits and a check character
    (ISO 7064 MOD 11-2 over the 17 digits) that is a digit or X. Returns it normalised (trimmed,
    upper-case X)."""
    value = raw.strip().upper()
    if not _NATIONAL_ID.fullmatch(value):
        raise InvalidInput(
            "national_id must be 18 characters: 17 digits, then a digit or X",
            field="national_id",
            code="invalid_national_id",
        )
    check = _ID_CHECK[sum(int(d) * w for d, w in zip(value[:17], _ID_WEIGHTS, strict=True)) % 11]
    if value[17] != check:
        raise InvalidInput(
            "national_id's check character does not match its digits (a typo?)",
            field="national_id",
            code="invalid_national_id",
        )
    return value


def check_national_id_matches(national_id: str, *, birth_date: date, gender: Gender) -> None:
    """A parsed national ID holds the birth date (digits 7-14) and the gender (17th digit odd for
    a man, even for a woman); both must agree with what was typed into the form."""
    if national_id[6:14] != birth_date.strftime("%Y%m%d"):
        raise InvalidInput(
            "birth_date does not match the birth date in national_id",
            field="birth_date",
            code="national_id_birth_date_mismatch",
        )
    id_gender = Gender.MALE if int(national_id[16]) % 2 else Gender.FEMALE
    if gender is not id_gender:
        raise InvalidInput(
            "gender does not match the gender digit of national_id",
            field="gender",
            code="national_id_gender_mismatch",
        )


def parse_phone(raw: str) -> str:
    """A phone number: 7-15 digits, optionally a leading +; spaces, hyphens, brackets dropped."""
    value = _SEPARATORS.sub("", raw)
    if not _PHONE.fullmatch(value):
        raise InvalidInput("phone must be 7 to 15 digits (a leading + allowed)", field="phone")
    return value


def parse_card_number(raw: str, field: str = "card_number") -> str:
    """A Jing card is a bank debit card: 16 to 19 digits (spaces and hyphens are dropped) ending in
    a Luhn check digit."""
    value = _SEPARATORS.sub("", raw)
    if not _CARD_NUMBER.fullmatch(value):
        raise InvalidInput("card_number must be 16 to 19 digits", field=field, code="invalid_card_number")
    if not luhn_valid(value):
        raise InvalidInput(
            "card_number's check digit does not match (a typo?)", field=field, code="invalid_card_number"
        )
    return value


def luhn_valid(digits: str) -> bool:
    """The Luhn (mod 10) check of bank card numbers: the last digit is the check digit."""
    total = 0
    for i, d in enumerate(reversed(digits)):
        k = int(d) * (2 if i % 2 else 1)
        total += k - 9 if k > 9 else k
    return total % 10 == 0


def age_on(birth_date: date, day: date) -> int:
    """Completed years on ``day`` (someone born on 29 February turns a year older on 1 March)."""
    return day.year - birth_date.year - ((day.month, day.day) < (birth_date.month, birth_date.day))


def add_months(day: date, months: int) -> date:
    """Same day of the month ``months`` later, clamped to the month's end (31 Jan + 1 = 28/29 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def coverage_end(starts_on: date, term_months: int) -> date:
    """Last covered day, inclusive: start + term - 1 day (2024-03-01, 12 months -> 2025-02-28).
    Consecutive terms tile: the next term starts the day after this one ends."""
    return add_months(starts_on, term_months) - timedelta(days=1)


def _check_date(
    day: date, field: str, *, today: date, earliest: date = EARLIEST_DATE, after: str = ""
) -> None:
    if day > today:
        raise InvalidInput(f"{field} cannot be in the future", field=field, code="date_in_future")
    if day < earliest:
        what = after or f"{EARLIEST_DATE.isoformat()}"
        raise InvalidInput(f"{field} cannot be before {what}", field=field, code="date_too_early")


def _required_text(value: str, field: str) -> str:
    text = value.strip()
    if not text:
        raise InvalidInput(f"{field} must not be blank", field=field)
    return text


# --- Union ------------------------------------------------------------------------------------


class Union(Aggregate[uuid.UUID]):
    """A node of the organisation tree: municipal federation -> district -> street -> grassroots.
    Members belong to grassroots unions only."""

    stream_type = "Union"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.name = ""
        self.level: UnionLevel | None = None
        self.parent_id: uuid.UUID | None = None

    def register(self, *, name: str, level: UnionLevel, parent: Union | None) -> None:
        """``parent`` is the loaded parent aggregate (not ``exists`` if the id is unknown)."""
        if self.exists:
            raise Conflict(f"union {self.id} is already registered", code="union_exists")
        name = _required_text(name, "name")
        expected = PARENT_LEVEL[level]
        if expected is None:
            if parent is not None:
                raise InvalidInput(
                    "a municipal federation has no parent", field="parent_id", code="parent_not_allowed"
                )
        else:
            if parent is None:
                raise InvalidInput(
                    f"a {level} union needs a parent_id ({expected} level)",
                    field="parent_id",
                    code="parent_required",
                )
            if not parent.exists:
                raise InvalidInput(f"parent union {parent.id} does not exist", field="parent_id")
            if parent.level is not expected:
                raise InvalidInput(
                    f"a {level} union sits under a {expected} union, not a {parent.level} one",
                    field="parent_id",
                    code="wrong_parent_level",
                )
        self._raise(
            UnionRegistered(
                union_id=self.id,
                name=name,
                level=level,
                parent_union_id=parent.id if parent else None,
            )
        )

    @applies(UnionRegistered)
    def _on_UnionRegistered(self, e: UnionRegistered) -> None:
        self.name, self.level = e.name, e.level
        self.parent_id = e.parent_union_id


def _grassroots(union: Union, field: str) -> Union:
    if not union.exists:
        raise InvalidInput(f"union {union.id} does not exist", field=field, code="unknown_union")
    if union.level is not UnionLevel.GRASSROOTS:
        raise InvalidInput(
            f"members belong to grassroots unions; this one is {union.level}",
            field=field,
            code="not_grassroots",
        )
    return union


# --- Member -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Card:
    """One Jing card the member held. Only its last 4 digits are ever known outside the vault."""

    last4: str
    issued_on: date
    cancelled_on: date | None = None
    reason: str | None = None

    @property
    def active(self) -> bool:
        return self.cancelled_on is None


@dataclass(frozen=True)
class PaperReceipt:
    """A paper enrolment's proof of payment, which a supervisor types in when recording an
    enrolment paid at a counter on an earlier day. Its ``reference`` (the receipt's number) is
    kept by membership and never put in an event; ``paid_on`` is."""

    reference: str
    paid_on: date

    @property
    def key(self) -> str:
        """What makes two typings the same receipt: compatibility-normalised (full-width digits
        and letters become ASCII), upper case, letters and digits only: ``jg-2016 000417``
        and the same typed in full-width characters are the receipt ``JG2016000417``, which
        pays for one enrolment."""
        folded = unicodedata.normalize("NFKC", self.reference).upper()
        return "".join(ch for ch in folded if ch.isalnum())


@dataclass(frozen=True)
class Enrollment:
    enrollment_id: uuid.UUID
    plan_code: str
    shares: int
    price_level: Decimal | None
    starts_on: date
    ends_on: date  # inclusive
    cancelled_on: date | None = None
    #: A paper enrolment recorded on a day after it was paid (see ``PaperReceipt``; one paid
    #: and recorded the same day is not late), and when it was paid.
    recorded_late: bool = False
    paid_on: date | None = None

    @property
    def active(self) -> bool:
        return self.cancelled_on is None

    @property
    def void(self) -> bool:
        """A paper enrolment cancelled from its first day: it never covered a day, so its receipt
        may pay for the corrected enrolment (cancelled any later, it did cover days, and a second
        enrolment on the same receipt would pay twice for them)."""
        return (
            self.paid_on is not None and self.cancelled_on is not None and self.cancelled_on <= self.starts_on
        )

    def overlaps(self, starts_on: date, ends_on: date) -> bool:
        return self.starts_on <= ends_on and starts_on <= self.ends_on


class Member(Aggregate[uuid.UUID]):
    """A union member: joins a grassroots union, may transfer, leaves once (retired, moved, died,
    other); holds at most one active Jing card; holds mutual-aid enrolments."""

    stream_type = "Member"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.union_id: uuid.UUID | None = None
        self.full_name = ""
        self.gender: Gender | None = None
        self.birth_date = EARLIEST_DATE
        self.joined_on = EARLIEST_DATE
        self.last_moved_on = EARLIEST_DATE  # joined or last transferred
        self.left_on: date | None = None
        self.leave_reason: LeaveReason | None = None
        self.cards: list[Card] = []
        self.enrollments: dict[uuid.UUID, Enrollment] = {}

    # -- queries --

    @property
    def has_left(self) -> bool:
        return self.left_on is not None

    @property
    def active_card(self) -> Card | None:
        return self.cards[-1] if self.cards and self.cards[-1].active else None

    def is_member_on(self, day: date) -> bool:
        """A member from the day they joined up to and including the day they left."""
        return self.joined_on <= day and (self.left_on is None or day <= self.left_on)

    def paid_cover_on(self, day: date) -> bool:
        """A paid enrolment covers ``day`` (it stays in force to its end date after leaving)."""
        return any(
            e.starts_on <= day <= e.ends_on and (e.cancelled_on is None or day < e.cancelled_on)
            for e in self.enrollments.values()
        )

    def _require_in_service(self, doing: str) -> None:
        if self.left_on is not None:
            raise Conflict(
                f"member left on {self.left_on.isoformat()} ({self.leave_reason}): cannot {doing}",
                code="member_retired" if self.leave_reason is LeaveReason.RETIRED else "member_left",
            )

    # -- commands --

    def join(
        self,
        *,
        union: Union,
        full_name: str,
        gender: Gender,
        birth_date: date,
        joined_on: date,
        today: date,
        employer: str | None = None,
    ) -> None:
        if self.exists:
            raise Conflict(f"member {self.id} already joined", code="member_exists")
        _grassroots(union, "union_id")
        full_name = _required_text(full_name, "full_name")
        _check_date(birth_date, "birth_date", today=today)
        _check_date(joined_on, "joined_on", today=today)
        if age_on(birth_date, joined_on) < MIN_MEMBER_AGE:
            raise InvalidInput(
                f"a member must be at least {MIN_MEMBER_AGE} on joined_on",
                field="birth_date",
                code="too_young",
            )
        self._raise(
            MemberJoined(
                member_id=self.id,
                union_id=union.id,
                full_name=full_name,
                gender=gender,
                birth_date=birth_date,
                joined_on=joined_on,
                employer=(employer or "").strip() or None,
            )
        )

    def transfer(self, *, to_union: Union, transferred_on: date, today: date) -> None:
        self._require_in_service("transfer")
        _grassroots(to_union, "to_union_id")
        if to_union.id == self.union_id:
            raise InvalidInput(
                "the member already belongs to this union", field="to_union_id", code="same_union"
            )
        _check_date(
            transferred_on,
            "transferred_on",
            today=today,
            earliest=self.last_moved_on,
            after=f"the member joined or last moved ({self.last_moved_on.isoformat()})",
        )
        assert self.union_id is not None
        self._raise(
            MemberTransferred(
                member_id=self.id,
                from_union_id=self.union_id,
                to_union_id=to_union.id,
                transferred_on=transferred_on,
            )
        )

    def leave(self, *, reason: LeaveReason, left_on: date, today: date) -> None:
        if self.left_on is not None:
            raise Conflict(f"member already left on {self.left_on.isoformat()}", code="member_left")
        _check_date(
            left_on,
            "left_on",
            today=today,
            earliest=self.last_moved_on,
            after=f"the member joined or last moved ({self.last_moved_on.isoformat()})",
        )
        self._raise(MemberLeft(member_id=self.id, left_on=left_on, reason=reason))

    def change_phone(self, *, today: date, same_as_recorded: bool) -> bool:
        """The phone on record changes (the vault keeps the number; the event only says it
        changed). ``same_as_recorded``: the vault found the new number is the one on record,
        which is no change: no event. Returns whether it changed. A member who left may still
        be reached (a payout, a claim): allowed."""
        if same_as_recorded:
            return False
        self._raise(MemberPhoneChanged(member_id=self.id, changed_on=today))
        return True

    def issue_card(self, *, card_number: str, issued_on: date, today: date) -> str:
        """Issue a Jing card; returns its last 4 digits. One active card at a time."""
        self._require_in_service("issue a card")
        number = parse_card_number(card_number)
        if self.active_card is not None:
            raise Conflict(
                f"member already holds an active card ending {self.active_card.last4}; cancel or replace it",
                code="card_already_active",
            )
        previous_end = self.cards[-1].cancelled_on if self.cards else None
        earliest = max(self.joined_on, previous_end) if previous_end else self.joined_on
        _check_date(issued_on, "issued_on", today=today, earliest=earliest, after=earliest.isoformat())
        self._raise(CardIssued(member_id=self.id, card_last4=number[-4:], issued_on=issued_on))
        return number[-4:]

    def cancel_card(self, *, cancelled_on: date, today: date, reason: str = "cancelled") -> str:
        card = self.active_card
        if card is None:
            raise Conflict("member holds no active card", code="no_active_card")
        _check_date(
            cancelled_on, "cancelled_on", today=today, earliest=card.issued_on, after="the card was issued"
        )
        self._raise(
            CardCancelled(
                member_id=self.id,
                card_last4=card.last4,
                cancelled_on=cancelled_on,
                reason=_required_text(reason, "reason"),
            )
        )
        return card.last4

    def replace_card(
        self, *, card_number: str, replaced_on: date, today: date, same_as_active: bool = False
    ) -> tuple[str, str]:
        """Cancel the active card and issue the new one the same day. Returns (old, new) last 4.

        ``same_as_active``: the vault found ``card_number`` is the active card's own number (the
        aggregate only knows last 4 digits); "replacing" a card by itself is refused."""
        self._require_in_service("replace a card")
        number = parse_card_number(card_number)
        card = self.active_card
        if card is None:
            raise Conflict("member holds no active card", code="no_active_card")
        if same_as_active:
            raise Conflict(
                "card_number is the active card's own number; a replacement needs a new card",
                field="card_number",
                code="same_card_number",
            )
        # Checked here, under this route's own field name, before cancel_card checks cancelled_on.
        _check_date(
            replaced_on, "replaced_on", today=today, earliest=card.issued_on, after="the card was issued"
        )
        old = self.cancel_card(cancelled_on=replaced_on, today=today, reason="replaced")
        new = self.issue_card(card_number=number, issued_on=replaced_on, today=today)
        return old, new

    def enroll(
        self,
        *,
        enrollment_id: uuid.UUID,
        plan: Plan,
        shares: int,
        starts_on: date,
        today: date,
        price_level: Decimal | None = None,
        ends_on: date | None = None,
        paper: PaperReceipt | None = None,
    ) -> Enrollment:
        """Enrol in a paid mutual-aid plan for a coverage period (default: the plan's term).

        Coverage never starts before the day the enrolment is recorded (``today``, the Beijing
        date): a backdated start would buy cover for an injury that already happened. The one
        exception is a ``paper`` enrolment, paid on an earlier day and recorded now from its
        receipt (only a supervisor may send one; the route checks): it may start on the payment
        day, and its event says it was recorded late. Either way the event's ``recorded_on`` is
        today, and claims never lets it cover an injury reported before that day."""
        if not plan.active:
            raise InvalidInput(
                f"plan {plan.code} is not open for enrolment", field="plan_code", code="plan_inactive"
            )
        if plan.benefit is Benefit.CARD:
            raise InvalidInput(
                f"{plan.code} is a free benefit of the Jing card, not a plan to enrol in",
                field="plan_code",
                code="card_benefit",
            )
        self._require_in_service("enrol")
        if shares < 1:
            raise InvalidInput("shares must be at least 1", field="shares")
        if price_level is not None and price_level not in plan.price_levels:
            levels = ", ".join(str(p) for p in plan.price_levels) or "none"
            raise InvalidInput(
                f"price_level must be one of the plan's levels ({levels})", field="price_level"
            )
        if self.active_card is None:
            raise Conflict("a Jing card is required to enrol; issue one first", code="card_required")
        if starts_on < self.joined_on:
            raise InvalidInput("coverage cannot start before the member joined", field="starts_on")
        if paper is None:
            if starts_on < today:
                raise InvalidInput(
                    f"coverage cannot start before the day the enrolment is recorded "
                    f"({today.isoformat()}); a paper enrolment paid earlier is recorded by a "
                    "supervisor with its receipt",
                    field="starts_on",
                    code="start_before_recording_day",
                )
        else:
            _required_text(paper.reference, "paper.receipt_reference")
            if not paper.key:
                raise InvalidInput(
                    "a receipt reference needs letters or digits",
                    field="paper.receipt_reference",
                    code="invalid_receipt_reference",
                )
            _check_date(paper.paid_on, "paper.paid_on", today=today)
            if starts_on < paper.paid_on:
                raise InvalidInput(
                    f"a paper enrolment's coverage cannot start before it was paid "
                    f"({paper.paid_on.isoformat()})",
                    field="starts_on",
                    code="start_before_payment",
                )
        if starts_on > today + MAX_ENROLMENT_LEAD:
            raise InvalidInput("coverage can start at most a year ahead", field="starts_on")
        default_end = coverage_end(starts_on, plan.term_months)
        if ends_on is None:
            ends_on = default_end
        elif not starts_on <= ends_on <= default_end:
            raise InvalidInput(
                f"ends_on must be between starts_on and {default_end.isoformat()} (the plan's term)",
                field="ends_on",
            )
        if plan.genders is not None and self.gender not in plan.genders:
            allowed = ", ".join(g.value for g in plan.genders) or "nobody"
            raise InvalidInput(
                f"plan {plan.code} is for {allowed} members only", field="plan_code", code="gender_limit"
            )
        age = age_on(self.birth_date, starts_on)
        if (plan.min_age is not None and age < plan.min_age) or (
            plan.max_age is not None and age > plan.max_age
        ):
            low = plan.min_age if plan.min_age is not None else 0
            high = plan.max_age if plan.max_age is not None else "any age"
            raise InvalidInput(
                f"plan {plan.code} is for ages {low}-{high}; the member is {age} when coverage starts",
                field="plan_code",
                code="age_limit",
            )
        for other in self.enrollments.values():
            if other.plan_code == plan.code and other.active and other.overlaps(starts_on, ends_on):
                raise Conflict(
                    f"already enrolled in {plan.code} from {other.starts_on.isoformat()} "
                    f"to {other.ends_on.isoformat()} (enrollment {other.enrollment_id})",
                    code="overlapping_enrollment",
                )
        self._raise(
            PlanEnrolled(
                enrollment_id=enrollment_id,
                member_id=self.id,
                plan_code=plan.code,
                shares=shares,
                price_level=price_level,
                coverage_starts_on=starts_on,
                coverage_ends_on=ends_on,
                recorded_on=today,
                recorded_late=paper is not None and paper.paid_on < today,
                paid_on=paper.paid_on if paper is not None else None,
            )
        )
        return self.enrollments[enrollment_id]

    def cancel_enrollment(
        self, *, enrollment_id: uuid.UUID, cancelled_on: date, today: date, reason: str = "cancelled"
    ) -> Enrollment:
        enrollment = self.enrollments.get(enrollment_id)
        if enrollment is None:
            raise NotFound(f"member has no enrollment {enrollment_id}", field="enrollment_id")
        if not enrollment.active:
            raise Conflict(f"enrollment {enrollment_id} is already cancelled", code="enrollment_cancelled")
        _check_date(cancelled_on, "cancelled_on", today=today)
        self._raise(
            EnrollmentCancelled(
                enrollment_id=enrollment_id,
                member_id=self.id,
                plan_code=enrollment.plan_code,
                cancelled_on=cancelled_on,
                reason=_required_text(reason, "reason"),
            )
        )
        return self.enrollments[enrollment_id]

    # -- state --

    @applies(MemberJoined)
    def _on_MemberJoined(self, e: MemberJoined) -> None:
        self.union_id = e.union_id
        self.full_name, self.gender, self.birth_date = e.full_name, e.gender, e.birth_date
        self.joined_on = self.last_moved_on = e.joined_on

    @applies(MemberTransferred)
    def _on_MemberTransferred(self, e: MemberTransferred) -> None:
        self.union_id = e.to_union_id
        self.last_moved_on = e.transferred_on

    @applies(MemberLeft)
    def _on_MemberLeft(self, e: MemberLeft) -> None:
        self.left_on, self.leave_reason = e.left_on, e.reason

    @applies(MemberPhoneChanged)
    def _on_MemberPhoneChanged(self, e: MemberPhoneChanged) -> None:
        """Nothing the rules use: the number is in the vault."""

    @applies(CardIssued)
    def _on_CardIssued(self, e: CardIssued) -> None:
        self.cards.append(Card(last4=e.card_last4, issued_on=e.issued_on))

    @applies(CardCancelled)
    def _on_CardCancelled(self, e: CardCancelled) -> None:
        if self.cards and self.cards[-1].active:
            self.cards[-1] = replace(self.cards[-1], cancelled_on=e.cancelled_on, reason=e.reason)

    @applies(PlanEnrolled)
    def _on_PlanEnrolled(self, e: PlanEnrolled) -> None:
        self.enrollments[e.enrollment_id] = Enrollment(
            enrollment_id=e.enrollment_id,
            plan_code=e.plan_code,
            shares=e.shares,
            price_level=e.price_level,
            starts_on=e.coverage_starts_on,
            ends_on=e.coverage_ends_on,
            recorded_late=e.recorded_late,
            paid_on=e.paid_on,
        )

    @applies(EnrollmentCancelled)
    def _on_EnrollmentCancelled(self, e: EnrollmentCancelled) -> None:
        key = e.enrollment_id
        self.enrollments[key] = replace(self.enrollments[key], cancelled_on=e.cancelled_on)


# --- Injury report ----------------------------------------------------------------------------


@dataclass(frozen=True)
class FirstReport:
    """When the same injury (member, day it happened) was first reported, and at which version of
    the member's stream: reporting it again must not reopen what the first report could not
    claim (an enrolment recorded in between never covers it)."""

    reported_on: date
    member_version: int


class InjuryReport(Aggregate[uuid.UUID]):
    """A member (or staff for them) reports an injury; the claims service opens every claim the
    member is entitled to. Health details (description, diagnosis, hospital) never enter the
    event: the handler keeps them encrypted beside it."""

    stream_type = "InjuryReport"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.member_id: uuid.UUID | None = None
        self.occurred_on = EARLIEST_DATE
        #: The member stream's version the report was made at.
        self.member_version = 0

    def report(
        self,
        *,
        member: Member,
        occurred_on: date,
        work_related: bool,
        today: date,
        traffic_accident: bool = False,
        severity: InjurySeverity = InjurySeverity.INJURY,
        plan_versions: dict[str, int] | None = None,
        first_report: FirstReport | None = None,
    ) -> None:
        """``plan_versions``: how far each edited plan had been edited (see the event);
        ``first_report``: the first report of this same injury, if it was reported before."""
        if self.exists:
            raise Conflict(f"injury report {self.id} already exists", code="report_exists")
        _check_date(
            occurred_on,
            "occurred_on",
            today=today,
            earliest=member.joined_on,
            after=f"the member joined ({member.joined_on.isoformat()})",
        )
        if not member.is_member_on(occurred_on) and not member.paid_cover_on(occurred_on):
            # After leaving, only a paid enrolment still in force makes a report worth making
            # (the Jing-card benefit ended on the day of leaving).
            assert member.left_on is not None
            raise InvalidInput(
                f"the member had left on {member.left_on.isoformat()}, before occurred_on, "
                "and no paid enrolment covers that day",
                field="occurred_on",
                code="not_a_member_then",
            )
        self._raise(
            InjuryReported(
                report_id=self.id,
                member_id=member.id,
                occurred_on=occurred_on,
                work_related=work_related,
                reported_on=today,
                member_version=member.version,
                traffic_accident=traffic_accident,
                severity=severity,
                plan_versions=dict(plan_versions or {}),
                first_reported_on=first_report.reported_on if first_report else None,
                first_member_version=first_report.member_version if first_report else None,
            )
        )

    @applies(InjuryReported)
    def _on_InjuryReported(self, e: InjuryReported) -> None:
        self.member_id, self.occurred_on = e.member_id, e.occurred_on
        self.member_version = e.member_version


#: Roles that may read an injury report's health details (description, diagnosis, hospital).
HEALTH_READER_ROLES = ("staff", "supervisor")


def health_details_refusal(*, role: str, report_exists: bool, in_callers_unions: bool = True) -> str | None:
    """Why this caller may not read a report's health details, or None if they may. Every
    attempt, allowed or refused, goes into the audit trail with this reason.
    ``in_callers_unions``: False when the caller's token is bound to a union (a station's staff)
    and the member is in none of the unions at or below it."""
    if role not in HEALTH_READER_ROLES:
        return f"role {role} may not read injury details"
    if not report_exists:
        return "no such injury report"
    if not in_callers_unions:
        return "the member is not in the caller's union"
    return None


# --- Plan catalogue ---------------------------------------------------------------------------


class CataloguePlan(Aggregate[str]):
    """The edit history of one catalogue plan (stream id = plan code). The catalogue table is
    seeded with defaults; every staff edit becomes a ``PlanDefined`` event on this stream."""

    stream_type = "Plan"
    #: The catalogue table (a projection) holds the plan; the stream only records the edits.
    ignores = (PlanDefined,)

    def define(self, plan: Plan, *, current: Plan | None) -> bool:
        """Record ``plan`` unless the catalogue already holds exactly it. Returns whether it changed."""
        if plan.code != self.id:
            raise InvalidInput("code in the body must match the plan code in the path", field="code")
        if plan.min_age is not None and plan.max_age is not None and plan.min_age > plan.max_age:
            raise InvalidInput("max_age must not be below min_age", field="max_age")
        if plan.genders is not None and not plan.genders:
            raise InvalidInput(
                "genders must name at least one gender, or be null for everybody", field="genders"
            )
        if any(p <= 0 for p in plan.price_levels):
            raise InvalidInput("every price level must be positive", field="price_levels")
        if len(set(plan.price_levels)) != len(plan.price_levels):
            raise InvalidInput("price levels must not repeat", field="price_levels")
        if plan.reduced_benefit_until_days and plan.reduced_benefit_until_days < plan.waiting_days:
            raise InvalidInput(
                "reduced_benefit_until_days must not end before the waiting period",
                field="reduced_benefit_until_days",
            )
        for name in ("reduced_benefit_amount", "benefit_per_share", "max_benefit"):
            amount = getattr(plan, name)
            if amount is not None and amount < 0:
                raise InvalidInput(f"{name} must not be negative", field=name)
        if current is not None and current == plan:
            return False
        self._raise(PlanDefined.model_validate(plan.model_dump(mode="json")))
        return True
