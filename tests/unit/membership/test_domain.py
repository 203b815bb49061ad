"""Every rule of services/membership/domain.py, pure and fast (no database, no broker, no clock)."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from services.membership import domain
from services.membership.domain import CataloguePlan, InjuryReport, Member, Union
from shared.aggregate import Conflict, DomainError, InvalidInput, NotFound
from shared.contracts.common import Benefit, Gender, InjurySeverity
from shared.contracts.membership import (
    CardCancelled,
    CardIssued,
    InjuryReported,
    LeaveReason,
    MemberJoined,
    MemberPhoneChanged,
    PlanDefined,
    PlanEnrolled,
    UnionLevel,
)
from shared.contracts.plans import DEFAULT_PLANS, ClaimKind, Plan
from shared.events import DomainEvent
from tests.identifiers import card_number, identity, luhn_complete, national_id

TODAY = date(2016, 8, 10)
PLANS = {p.code: p for p in DEFAULT_PLANS}
ACCIDENT = PLANS["accident_injury"]
FEMALE = PLANS["female_special_disease"]


def ident() -> uuid.UUID:
    return uuid.uuid4()


def expect(exc_type: type[DomainError], field: str | None = None, code: str | None = None) -> Any:
    """pytest.raises for a domain error, checking the field it names (and its code)."""

    class _Check:
        def __enter__(self) -> None:
            self._ctx = pytest.raises(exc_type)
            self.info = self._ctx.__enter__()

        def __exit__(self, *exc: Any) -> bool:
            handled = self._ctx.__exit__(*exc)
            if not handled:
                return False  # another exception type: let it fail the test as it is
            err = self.info.value
            assert type(err) is exc_type, f"{type(err).__name__}: {err}"
            if field is not None:
                assert err.field == field, f"field {err.field!r}, expected {field!r}: {err}"
            if code is not None:
                assert err.code == code, f"code {err.code!r}, expected {code!r}: {err}"
            return bool(handled)

    return _Check()


# --- fixtures as plain builders ---------------------------------------------------------------


def tree() -> dict[UnionLevel, Union]:
    """A saved municipal -> district -> street -> grassroots chain."""
    out: dict[UnionLevel, Union] = {}
    parent: Union | None = None
    for level in UnionLevel:
        union = Union(ident())
        union.register(name=f"{level} union", level=level, parent=parent)
        union.mark_saved()
        out[level] = parent = union
    return out


GRASSROOTS = tree()[UnionLevel.GRASSROOTS]


class RecordingMember(Member):
    """A Member that remembers every event it raised, saved or not, so tests can replay them."""

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.history: list[DomainEvent] = []

    def _raise(self, event: DomainEvent) -> None:
        super()._raise(event)
        self.history.append(event)


def member(
    *,
    gender: Gender = Gender.MALE,
    birth_date: date = date(1980, 5, 20),
    joined_on: date = date(2010, 1, 1),
    card: bool = True,
) -> Member:
    m = RecordingMember(ident())
    m.join(
        union=GRASSROOTS,
        full_name="王小明",
        gender=gender,
        birth_date=birth_date,
        joined_on=joined_on,
        today=TODAY,
    )
    if card:
        m.issue_card(card_number="6217000010001254567", issued_on=joined_on, today=TODAY)
    m.mark_saved()
    return m


def enroll(
    m: Member, plan: Plan = ACCIDENT, starts_on: date = date(2016, 1, 1), **kw: Any
) -> domain.Enrollment:
    """Enrol, recorded (``today``) on the start day when that is before TODAY, else on TODAY:
    coverage never starts before the day it is recorded, so a test about terms, ages or overlaps
    in early 2016 records its enrolment then. The tests of that rule pass ``today`` themselves."""
    today = kw.pop("today", min(starts_on, TODAY))
    return m.enroll(
        enrollment_id=ident(), plan=plan, shares=kw.pop("shares", 1), starts_on=starts_on, today=today, **kw
    )


def replayed(agg: Member) -> Member:
    """The aggregate as the store would rebuild it from all its events."""
    events = agg.history if isinstance(agg, RecordingMember) else agg.pending_events
    return Member.rehydrate(agg.id, events)


# --- purity -----------------------------------------------------------------------------------


def test_plan_data_comes_in_as_values_never_from_constants_here() -> None:
    # Import purity of every service's domain is tests/unit/test_domain_purity.py.
    source = Path(domain.__file__).read_text()
    for plan in DEFAULT_PLANS:
        assert f'"{plan.code}"' not in source


# --- value rules ------------------------------------------------------------------------------


@pytest.mark.parametrize("raw", ["110113198005201231", "11011319800520124X", " 11011319800520124x "])
def test_national_id_accepts_18_characters_with_its_check_digit_or_x(raw: str) -> None:
    assert domain.parse_national_id(raw) == raw.strip().upper()


@pytest.mark.parametrize(
    "raw",
    [
        "11011319800520123",
        "1101131980052012345",
        "1101131980052012A4",
        "X10113198005201234",
        "",
        "110113198005201234",  # well-formed, but the check character is 1
        "110113198005201230",  # one off
        "11011319800520123X",
        "110113198005201241",  # X expected
    ],
)
def test_national_id_rejects_other_shapes_and_wrong_check_characters_without_echoing_the_value(
    raw: str,
) -> None:
    with pytest.raises(InvalidInput) as info:
        domain.parse_national_id(raw)
    assert info.value.field == "national_id" and info.value.code == "invalid_national_id"
    assert raw.strip() == "" or raw not in str(info.value)


def test_every_generated_national_id_passes_and_every_single_digit_typo_is_caught() -> None:
    for n in range(0, 36_500_000, 997_001):
        birth, nid = identity(n, female=n % 2 == 0)
        assert domain.parse_national_id(nid) == nid
        domain.check_national_id_matches(
            nid, birth_date=birth, gender=Gender.FEMALE if n % 2 == 0 else Gender.MALE
        )
        for i in range(17):  # MOD 11-2 catches every substitution of one digit
            typo = nid[:i] + str((int(nid[i]) + 1) % 10) + nid[i + 1 :]
            with expect(InvalidInput, "national_id"):
                domain.parse_national_id(typo)


def test_national_id_birth_date_and_gender_must_match_the_form() -> None:
    nid = national_id(date(1980, 5, 20))  # a man
    domain.check_national_id_matches(nid, birth_date=date(1980, 5, 20), gender=Gender.MALE)
    for other in (date(1980, 5, 21), date(1980, 5, 19), date(1981, 5, 20)):
        with pytest.raises(InvalidInput) as info:
            domain.check_national_id_matches(nid, birth_date=other, gender=Gender.MALE)
        assert info.value.field == "birth_date" and info.value.code == "national_id_birth_date_mismatch"
        assert nid not in str(info.value)
    with pytest.raises(InvalidInput) as info:
        domain.check_national_id_matches(nid, birth_date=date(1980, 5, 20), gender=Gender.FEMALE)
    assert info.value.field == "gender" and info.value.code == "national_id_gender_mismatch"
    woman = national_id(date(1980, 5, 20), female=True)
    assert int(woman[16]) % 2 == 0
    domain.check_national_id_matches(woman, birth_date=date(1980, 5, 20), gender=Gender.FEMALE)
    with expect(InvalidInput, "gender"):
        domain.check_national_id_matches(woman, birth_date=date(1980, 5, 20), gender=Gender.MALE)


def test_phone_is_normalised_and_checked() -> None:
    assert domain.parse_phone("138 0013-8000") == "13800138000"
    assert domain.parse_phone("+86 10 6951 2345") == "+861069512345"
    for bad in ("12345", "phone", "1" * 16):
        with expect(InvalidInput, "phone"):
            domain.parse_phone(bad)


def test_card_number_is_16_to_19_digits_ending_in_a_luhn_digit() -> None:
    assert domain.parse_card_number("6217 0000 1000 1234") == "6217000010001234"
    assert domain.parse_card_number("4111-1111-1111-1111") == "4111111111111111"
    nineteen = luhn_complete("6" * 18)
    assert domain.parse_card_number(nineteen) == nineteen
    for bad in ("6" * 15, luhn_complete("6" * 19), "6217abcd10001234"):
        with expect(InvalidInput, "card_number"):
            domain.parse_card_number(bad)


def test_a_wrong_luhn_digit_or_a_single_digit_typo_is_invalid_card_number() -> None:
    for number in (card_number(length=16), card_number(length=19), "6217000010001234"):
        assert domain.parse_card_number(number) == number
        assert domain.luhn_valid(number)
        for i in range(len(number)):
            typo = number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1 :]
            with pytest.raises(InvalidInput) as info:
                domain.parse_card_number(typo)
            assert info.value.code == "invalid_card_number" and info.value.field == "card_number"
            assert typo not in str(info.value)


def test_age_counts_completed_years() -> None:
    assert domain.age_on(date(1980, 5, 20), date(2016, 5, 19)) == 35
    assert domain.age_on(date(1980, 5, 20), date(2016, 5, 20)) == 36
    assert domain.age_on(date(2000, 2, 29), date(2017, 2, 28)) == 16
    assert domain.age_on(date(2000, 2, 29), date(2017, 3, 1)) == 17


@pytest.mark.parametrize(
    ("start", "months", "end"),
    [
        (date(2016, 1, 1), 12, date(2016, 12, 31)),
        (date(2016, 3, 1), 12, date(2017, 2, 28)),
        (date(2016, 8, 15), 12, date(2017, 8, 14)),
        (date(2016, 1, 31), 1, date(2016, 2, 28)),
        (date(2016, 11, 1), 6, date(2017, 4, 30)),
    ],
)
def test_coverage_ends_the_day_before_start_plus_term(start: date, months: int, end: date) -> None:
    assert domain.coverage_end(start, months) == end
    # consecutive terms tile: no gap, no overlap
    assert domain.add_months(start, months) == end + timedelta(days=1)


# --- unions -----------------------------------------------------------------------------------


def test_union_tree_levels_chain_upwards() -> None:
    chain = tree()
    assert chain[UnionLevel.MUNICIPAL].parent_id is None
    assert chain[UnionLevel.GRASSROOTS].parent_id == chain[UnionLevel.STREET].id


@pytest.mark.parametrize(
    ("level", "parent_level", "code"),
    [
        (UnionLevel.MUNICIPAL, UnionLevel.MUNICIPAL, "parent_not_allowed"),
        (UnionLevel.DISTRICT, None, "parent_required"),
        (UnionLevel.STREET, UnionLevel.MUNICIPAL, "wrong_parent_level"),
        (UnionLevel.GRASSROOTS, UnionLevel.DISTRICT, "wrong_parent_level"),
        (UnionLevel.GRASSROOTS, UnionLevel.GRASSROOTS, "wrong_parent_level"),
    ],
)
def test_union_parent_must_be_one_level_up(
    level: UnionLevel, parent_level: UnionLevel | None, code: str
) -> None:
    chain = tree()
    parent = chain[parent_level] if parent_level else None
    with expect(InvalidInput, "parent_id", code):
        Union(ident()).register(name="x", level=level, parent=parent)


def test_union_unknown_parent_and_blank_name() -> None:
    with expect(InvalidInput, "parent_id"):
        Union(ident()).register(name="x", level=UnionLevel.DISTRICT, parent=Union(ident()))
    with expect(InvalidInput, "name"):
        Union(ident()).register(name="  ", level=UnionLevel.MUNICIPAL, parent=None)


# --- joining ----------------------------------------------------------------------------------


def test_join_raises_member_joined_without_personal_identifiers() -> None:
    m = Member(ident())
    m.join(
        union=GRASSROOTS,
        full_name=" 王小明 ",
        gender=Gender.MALE,
        birth_date=date(1980, 5, 20),
        joined_on=date(2010, 1, 1),
        employer="顺义某公司",
        today=TODAY,
    )
    [event] = m.pending_events
    assert isinstance(event, MemberJoined)
    assert event.full_name == "王小明" and event.union_id == GRASSROOTS.id
    assert event.employer == "顺义某公司"
    assert not {"national_id", "phone"} & set(MemberJoined.model_fields)
    assert replayed(m).union_id == GRASSROOTS.id


def test_join_needs_an_existing_grassroots_union() -> None:
    kw: dict[str, Any] = {
        "full_name": "x",
        "gender": Gender.MALE,
        "birth_date": date(1980, 1, 1),
        "joined_on": TODAY,
        "today": TODAY,
    }
    with expect(InvalidInput, "union_id", "unknown_union"):
        Member(ident()).join(union=Union(ident()), **kw)
    with expect(InvalidInput, "union_id", "not_grassroots"):
        Member(ident()).join(union=tree()[UnionLevel.STREET], **kw)


@pytest.mark.parametrize(
    ("birth", "joined", "field"),
    [
        (TODAY + timedelta(days=1), TODAY, "birth_date"),
        (date(1980, 1, 1), TODAY + timedelta(days=1), "joined_on"),
        (date(1899, 12, 31), TODAY, "birth_date"),
        (date(2000, 8, 11), date(2016, 8, 10), "birth_date"),  # 15 on the day they join
    ],
)
def test_join_dates_must_be_plausible(birth: date, joined: date, field: str) -> None:
    with expect(InvalidInput, field):
        Member(ident()).join(
            union=GRASSROOTS,
            full_name="x",
            gender=Gender.MALE,
            birth_date=birth,
            joined_on=joined,
            today=TODAY,
        )


def test_sixteen_year_old_may_join() -> None:
    m = Member(ident())
    m.join(
        union=GRASSROOTS,
        full_name="x",
        gender=Gender.FEMALE,
        birth_date=date(2000, 8, 10),
        joined_on=TODAY,
        today=TODAY,
    )
    assert m.pending_events


# --- transfer and leave -----------------------------------------------------------------------


def test_transfer_moves_member_to_another_grassroots_union() -> None:
    m = member()
    other = tree()[UnionLevel.GRASSROOTS]
    m.transfer(to_union=other, transferred_on=date(2015, 6, 1), today=TODAY)
    assert m.union_id == other.id
    assert replayed(m).union_id == other.id and replayed(m).last_moved_on == date(2015, 6, 1)


def test_transfer_rules() -> None:
    m = member()
    with expect(InvalidInput, "to_union_id", "same_union"):
        m.transfer(to_union=GRASSROOTS, transferred_on=TODAY, today=TODAY)
    with expect(InvalidInput, "to_union_id", "not_grassroots"):
        m.transfer(to_union=tree()[UnionLevel.STREET], transferred_on=TODAY, today=TODAY)
    with expect(InvalidInput, "to_union_id", "unknown_union"):
        m.transfer(to_union=Union(ident()), transferred_on=TODAY, today=TODAY)
    other = tree()[UnionLevel.GRASSROOTS]
    with expect(InvalidInput, "transferred_on"):
        m.transfer(to_union=other, transferred_on=date(2009, 12, 31), today=TODAY)
    with expect(InvalidInput, "transferred_on"):
        m.transfer(to_union=other, transferred_on=TODAY + timedelta(days=1), today=TODAY)
    m.leave(reason=LeaveReason.MOVED, left_on=TODAY, today=TODAY)
    with expect(Conflict, code="member_left"):
        m.transfer(to_union=other, transferred_on=TODAY, today=TODAY)


def test_leave_once_with_a_reason_on_a_plausible_date() -> None:
    m = member()
    with expect(InvalidInput, "left_on"):
        m.leave(reason=LeaveReason.RETIRED, left_on=date(2009, 1, 1), today=TODAY)
    with expect(InvalidInput, "left_on"):
        m.leave(reason=LeaveReason.RETIRED, left_on=TODAY + timedelta(days=1), today=TODAY)
    m.leave(reason=LeaveReason.RETIRED, left_on=date(2016, 6, 30), today=TODAY)
    assert replayed(m).leave_reason is LeaveReason.RETIRED
    with expect(Conflict, code="member_left"):
        m.leave(reason=LeaveReason.DIED, left_on=TODAY, today=TODAY)


# --- Jing card --------------------------------------------------------------------------------


def test_issue_card_publishes_only_the_last_four_digits() -> None:
    m = member(card=False)
    assert m.issue_card(card_number="6217 0000 1006 9876", issued_on=date(2012, 3, 1), today=TODAY) == "9876"
    [event] = m.pending_events
    assert isinstance(event, CardIssued) and event.card_last4 == "9876"
    assert "6217" not in event.model_dump_json()
    assert replayed(m).active_card == domain.Card("9876", date(2012, 3, 1))


def test_one_active_card_at_a_time() -> None:
    m = member()
    with expect(Conflict, code="card_already_active"):
        m.issue_card(card_number="6217000010025555", issued_on=TODAY, today=TODAY)


def test_card_dates_and_number_are_checked() -> None:
    m = member(card=False, joined_on=date(2012, 1, 1))
    with expect(InvalidInput, "card_number"):
        m.issue_card(card_number="1234", issued_on=TODAY, today=TODAY)
    with expect(InvalidInput, "issued_on"):
        m.issue_card(card_number="6217000010025555", issued_on=date(2011, 12, 31), today=TODAY)
    with expect(InvalidInput, "issued_on"):
        m.issue_card(card_number="6217000010025555", issued_on=TODAY + timedelta(days=1), today=TODAY)


def test_cancel_then_issue_a_new_card() -> None:
    m = member()
    assert m.cancel_card(cancelled_on=date(2015, 1, 1), today=TODAY, reason="lost") == "4567"
    assert m.active_card is None
    with expect(Conflict, code="no_active_card"):
        m.cancel_card(cancelled_on=TODAY, today=TODAY)
    with expect(InvalidInput, "issued_on"):  # not before the last card was cancelled
        m.issue_card(card_number="6217000010025555", issued_on=date(2014, 12, 31), today=TODAY)
    m.issue_card(card_number="6217000010025555", issued_on=date(2015, 1, 2), today=TODAY)
    state = replayed(m)
    assert [c.active for c in state.cards] == [False, True] and state.cards[0].reason == "lost"


def test_replace_card_cancels_old_and_issues_new() -> None:
    m = member()
    assert m.replace_card(card_number="6217000010022222", replaced_on=TODAY, today=TODAY) == ("4567", "2222")
    cancelled, issued = m.pending_events
    assert isinstance(cancelled, CardCancelled) and cancelled.reason == "replaced"
    assert isinstance(issued, CardIssued) and issued.card_last4 == "2222"
    assert replayed(m).active_card is not None
    without = member(card=False)
    with expect(Conflict, code="no_active_card"):
        without.replace_card(card_number="6217000010022222", replaced_on=TODAY, today=TODAY)


def test_a_phone_change_raises_an_event_without_the_number_and_the_same_number_raises_none() -> None:
    m = member()
    assert m.change_phone(today=TODAY, same_as_recorded=True) is False
    assert m.pending_events == []
    assert m.change_phone(today=TODAY, same_as_recorded=False) is True
    [event] = m.pending_events
    assert isinstance(event, MemberPhoneChanged) and event.changed_on == TODAY
    assert set(MemberPhoneChanged.model_fields) == {"member_id", "changed_on"}  # never the number
    replayed(m)  # the aggregate accounts for its own event


def test_a_member_who_left_may_still_change_phone() -> None:
    m = member()
    m.leave(reason=LeaveReason.MOVED, left_on=TODAY, today=TODAY)
    assert m.change_phone(today=TODAY, same_as_recorded=False) is True


def test_left_member_gets_no_card() -> None:
    m = member(card=False)
    m.leave(reason=LeaveReason.MOVED, left_on=TODAY, today=TODAY)
    with expect(Conflict, code="member_left"):
        m.issue_card(card_number="6217000010025555", issued_on=TODAY, today=TODAY)


# --- enrolment --------------------------------------------------------------------------------


def test_enrol_defaults_to_the_plans_term() -> None:
    m = member()
    e = enroll(m, shares=3, price_level=Decimal(50))
    [event] = m.pending_events
    assert isinstance(event, PlanEnrolled)
    assert (event.coverage_starts_on, event.coverage_ends_on) == (date(2016, 1, 1), date(2016, 12, 31))
    assert event.shares == 3 and event.price_level == Decimal(50)
    assert replayed(m).enrollments[e.enrollment_id] == e


def test_term_comes_from_the_plan_data() -> None:
    half_year = ACCIDENT.model_copy(update={"code": "accident_half", "term_months": 6})
    assert enroll(member(), plan=half_year, starts_on=date(2016, 3, 1)).ends_on == date(2016, 8, 31)


def test_shorter_coverage_may_be_given_but_not_longer() -> None:
    assert enroll(member(), ends_on=date(2016, 6, 30)).ends_on == date(2016, 6, 30)
    for bad in (date(2017, 1, 1), date(2015, 12, 31)):
        with expect(InvalidInput, "ends_on"):
            enroll(member(), ends_on=bad)


def test_shares_and_price_level() -> None:
    with expect(InvalidInput, "shares"):
        enroll(member(), shares=0)
    with expect(InvalidInput, "price_level"):
        enroll(member(), price_level=Decimal(30))


def test_a_jing_card_is_required() -> None:
    with expect(Conflict, code="card_required"):
        enroll(member(card=False))
    m = member()
    m.cancel_card(cancelled_on=date(2015, 12, 1), today=TODAY)
    with expect(Conflict, code="card_required"):
        enroll(m)


def test_retired_and_left_members_cannot_enrol() -> None:
    m = member()
    m.leave(reason=LeaveReason.RETIRED, left_on=date(2016, 1, 1), today=TODAY)
    with expect(Conflict, code="member_retired"):
        enroll(m)
    other = member()
    other.leave(reason=LeaveReason.MOVED, left_on=date(2016, 1, 1), today=TODAY)
    with expect(Conflict, code="member_left"):
        enroll(other)


def test_gender_limit_comes_from_the_plan() -> None:
    with expect(InvalidInput, "plan_code", "gender_limit"):
        enroll(member(gender=Gender.MALE), plan=FEMALE)
    assert enroll(member(gender=Gender.FEMALE), plan=FEMALE).plan_code == "female_special_disease"


@pytest.mark.parametrize(
    ("birth", "joined", "ok"),
    [
        (date(1955, 1, 2), date(2010, 1, 1), True),  # 60 on 2016-01-01, the first day covered
        (date(1955, 1, 1), date(2010, 1, 1), False),  # 61 that day
        (date(1999, 12, 31), date(2015, 12, 31), True),  # 16 that day
    ],
)
def test_accident_age_limit_16_to_60_on_coverage_start(birth: date, joined: date, ok: bool) -> None:
    m = member(birth_date=birth, joined_on=joined)
    if ok:
        assert enroll(m, starts_on=date(2016, 1, 1)).plan_code == ACCIDENT.code
    else:
        with expect(InvalidInput, "plan_code", "age_limit"):
            enroll(m, starts_on=date(2016, 1, 1))


def test_too_young_for_a_plan_with_a_higher_minimum_age() -> None:
    plan = ACCIDENT.model_copy(update={"code": "accident_adults", "min_age": 18})
    m = member(birth_date=date(1998, 6, 1), joined_on=date(2014, 6, 1))  # 17 on 2016-01-01
    with expect(InvalidInput, "plan_code", "age_limit"):
        enroll(m, plan=plan)
    assert enroll(m, plan=plan, starts_on=date(2016, 6, 1)).plan_code == "accident_adults"


def test_no_overlapping_enrolment_in_the_same_plan() -> None:
    m = member(gender=Gender.FEMALE)
    first = enroll(m)
    with expect(Conflict, code="overlapping_enrollment"):
        enroll(m, starts_on=date(2016, 12, 31))
    assert enroll(m, starts_on=first.ends_on + timedelta(days=1)).starts_on == date(2017, 1, 1)
    assert enroll(m, plan=FEMALE).plan_code == FEMALE.code  # another plan, same period
    m.cancel_enrollment(enrollment_id=first.enrollment_id, cancelled_on=TODAY, today=TODAY)
    assert enroll(m, starts_on=date(2016, 6, 1), ends_on=date(2016, 12, 31)).active


def test_cancel_enrollment() -> None:
    m = member()
    e = enroll(m)
    cancelled = m.cancel_enrollment(
        enrollment_id=e.enrollment_id, cancelled_on=TODAY, today=TODAY, reason="error"
    )
    assert cancelled.cancelled_on == TODAY and not replayed(m).enrollments[e.enrollment_id].active
    with expect(Conflict, code="enrollment_cancelled"):
        m.cancel_enrollment(enrollment_id=e.enrollment_id, cancelled_on=TODAY, today=TODAY)
    with expect(NotFound, "enrollment_id"):
        m.cancel_enrollment(enrollment_id=ident(), cancelled_on=TODAY, today=TODAY)


def test_only_active_paid_plans_take_enrolments() -> None:
    with expect(InvalidInput, "plan_code", "card_benefit"):
        enroll(member(), plan=PLANS["card_non_work_accident"])
    with expect(InvalidInput, "plan_code", "plan_inactive"):
        enroll(member(), plan=ACCIDENT.model_copy(update={"active": False}))


def test_coverage_start_is_bounded() -> None:
    with expect(InvalidInput, "starts_on"):
        enroll(member(joined_on=date(2016, 2, 1)), starts_on=date(2016, 1, 1))
    with expect(InvalidInput, "starts_on"):
        enroll(member(), starts_on=TODAY + timedelta(days=367))
    assert enroll(member(), starts_on=date(2017, 1, 1)).ends_on == date(2017, 12, 31)


def test_coverage_never_starts_before_the_recording_day() -> None:
    # The boundary is the recording day itself: it may start then, not the day before.
    with expect(InvalidInput, "starts_on", "start_before_recording_day"):
        enroll(member(), starts_on=TODAY - timedelta(days=1), today=TODAY)
    m = member()
    e = enroll(m, starts_on=TODAY, today=TODAY)
    [event] = m.pending_events
    assert isinstance(event, PlanEnrolled)
    assert (event.coverage_starts_on, event.recorded_on) == (TODAY, TODAY)
    assert (event.recorded_late, event.paid_on) == (False, None)
    assert (e.recorded_late, e.paid_on) == (False, None)


def paper(paid_on: date, reference: str = "JG-2016-000417") -> domain.PaperReceipt:
    return domain.PaperReceipt(reference=reference, paid_on=paid_on)


def test_a_paper_enrolment_may_start_on_the_day_it_was_paid_and_says_it_was_recorded_late() -> None:
    paid = TODAY - timedelta(days=30)
    m = member()
    e = enroll(m, starts_on=paid, today=TODAY, paper=paper(paid))
    [event] = m.pending_events
    assert isinstance(event, PlanEnrolled)
    assert (event.coverage_starts_on, event.recorded_on) == (paid, TODAY)
    assert (event.recorded_late, event.paid_on) == (True, paid)
    # The receipt's number is kept by membership, never in the event.
    assert "JG-2016-000417" not in event.model_dump_json()
    assert replayed(m).enrollments[e.enrollment_id] == e
    assert (e.recorded_late, e.paid_on) == (True, paid)
    # Later than the payment is fine; the day before it is not.
    assert enroll(member(), starts_on=paid + timedelta(days=1), today=TODAY, paper=paper(paid)).active
    with expect(InvalidInput, "starts_on", "start_before_payment"):
        enroll(member(), starts_on=paid - timedelta(days=1), today=TODAY, paper=paper(paid))


def test_a_paper_enrolment_is_paid_by_today_and_names_its_receipt() -> None:
    # paid_on = the recording day is the last one allowed; tomorrow has not been paid yet.
    assert enroll(member(), starts_on=TODAY, today=TODAY, paper=paper(TODAY)).paid_on == TODAY
    tomorrow = TODAY + timedelta(days=1)
    with expect(InvalidInput, "paper.paid_on", "date_in_future"):
        enroll(member(), starts_on=tomorrow, today=TODAY, paper=paper(tomorrow))
    with expect(InvalidInput, "paper.paid_on", "date_too_early"):
        enroll(member(), starts_on=TODAY, today=TODAY, paper=paper(date(1899, 12, 31)))
    with expect(InvalidInput, "paper.receipt_reference"):
        enroll(member(), starts_on=TODAY, today=TODAY, paper=paper(TODAY, reference="   "))
    with expect(InvalidInput, "paper.receipt_reference", "invalid_receipt_reference"):
        enroll(member(), starts_on=TODAY, today=TODAY, paper=paper(TODAY, reference="-/-"))
    # late only when paid on an earlier day than it is recorded
    assert enroll(member(), starts_on=TODAY, today=TODAY, paper=paper(TODAY)).recorded_late is False
    yesterday = TODAY - timedelta(days=1)
    assert enroll(member(), starts_on=yesterday, today=TODAY, paper=paper(yesterday)).recorded_late is True
    # Paper does not lift the other bounds: not before the member joined.
    with expect(InvalidInput, "starts_on"):
        enroll(member(joined_on=TODAY), starts_on=TODAY - timedelta(days=5), today=TODAY, paper=paper(TODAY))


def test_an_enrolment_event_written_before_paper_enrolments_existed_still_replays() -> None:
    old = {
        "enrollment_id": str(ident()),
        "member_id": str(ident()),
        "plan_code": "accident_injury",
        "shares": 1,
        "coverage_starts_on": "2016-01-01",
        "coverage_ends_on": "2016-12-31",
    }
    event = PlanEnrolled.model_validate(old)
    assert (event.recorded_on, event.recorded_late, event.paid_on) == (None, False, None)


# --- injury reports ---------------------------------------------------------------------------


def test_injury_report_carries_the_member_version_and_no_health_details() -> None:
    m = member()
    enroll(m)
    m.mark_saved()
    report = InjuryReport(ident())
    report.report(
        member=m,
        occurred_on=date(2016, 8, 1),
        work_related=False,
        traffic_accident=True,
        severity=InjurySeverity.DISABILITY,
        today=TODAY,
    )
    [event] = report.pending_events
    assert isinstance(event, InjuryReported)
    assert event.member_version == m.version == 3
    assert (event.occurred_on, event.reported_on, event.work_related) == (date(2016, 8, 1), TODAY, False)
    assert event.traffic_accident and event.severity is InjurySeverity.DISABILITY
    assert not {"description", "diagnosis", "hospital"} & set(InjuryReported.model_fields)


def test_injury_date_rules() -> None:
    m = member(joined_on=date(2015, 1, 1))
    for day in (TODAY + timedelta(days=1), date(2014, 12, 31)):
        with expect(InvalidInput, "occurred_on"):
            InjuryReport(ident()).report(member=m, occurred_on=day, work_related=True, today=TODAY)
    m.leave(reason=LeaveReason.DIED, left_on=date(2016, 5, 1), today=TODAY)
    with expect(InvalidInput, "occurred_on", "not_a_member_then"):
        InjuryReport(ident()).report(member=m, occurred_on=date(2016, 5, 2), work_related=False, today=TODAY)
    # the day they left still counts (an accident that ended in death that day)
    InjuryReport(ident()).report(member=m, occurred_on=date(2016, 5, 1), work_related=False, today=TODAY)


def test_after_leaving_a_report_is_accepted_only_while_a_paid_enrolment_is_in_force() -> None:
    m = member(joined_on=date(2010, 1, 1))
    enroll(m, starts_on=date(2016, 1, 1))  # to 2016-12-31
    m.leave(reason=LeaveReason.MOVED, left_on=date(2016, 5, 1), today=TODAY)
    InjuryReport(ident()).report(member=m, occurred_on=date(2016, 5, 2), work_related=False, today=TODAY)
    other = member(joined_on=date(2010, 1, 1))
    enroll(other, starts_on=date(2015, 5, 2))  # to 2016-05-01: ends the day of leaving
    other.leave(reason=LeaveReason.MOVED, left_on=date(2016, 5, 1), today=TODAY)
    with expect(InvalidInput, "occurred_on", "not_a_member_then"):
        InjuryReport(ident()).report(
            member=other, occurred_on=date(2016, 5, 2), work_related=False, today=TODAY
        )


# --- plan catalogue ---------------------------------------------------------------------------


def test_define_plan_raises_plan_defined_unless_unchanged() -> None:
    changed = ACCIDENT.model_copy(update={"max_age": 65})
    entry = CataloguePlan(ACCIDENT.code)
    assert entry.define(changed, current=ACCIDENT) is True
    [event] = entry.pending_events
    assert isinstance(event, PlanDefined) and event.max_age == 65 and event.code == ACCIDENT.code
    assert Plan.model_validate(event.model_dump()) == changed
    assert CataloguePlan(ACCIDENT.code).define(ACCIDENT, current=ACCIDENT) is False


def test_new_plan_without_current_row() -> None:
    plan = Plan(code="charity_plan", name="慈善", benefit=Benefit.PAID, claim_kind=ClaimKind.ILLNESS)
    entry = CataloguePlan("charity_plan")
    assert entry.define(plan, current=None) is True


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"min_age": 61, "max_age": 60}, "max_age"),
        ({"genders": []}, "genders"),
        ({"price_levels": [Decimal(0)]}, "price_levels"),
        ({"price_levels": [Decimal(50), Decimal(50)]}, "price_levels"),
        ({"waiting_days": 30, "reduced_benefit_until_days": 10}, "reduced_benefit_until_days"),
        ({"max_benefit": Decimal(-1)}, "max_benefit"),
    ],
)
def test_plan_definition_rules(update: dict[str, Any], field: str) -> None:
    with expect(InvalidInput, field):
        CataloguePlan(ACCIDENT.code).define(ACCIDENT.model_copy(update=update), current=ACCIDENT)


def test_plan_code_must_match_its_stream() -> None:
    with expect(InvalidInput, "code"):
        CataloguePlan("other_plan").define(ACCIDENT, current=None)


# --- who may read an injury's health details --------------------------------------------------


def test_only_staff_and_supervisors_read_health_details_and_every_refusal_has_a_reason() -> None:
    for role in ("staff", "supervisor"):
        assert domain.health_details_refusal(role=role, report_exists=True) is None
        assert domain.health_details_refusal(role=role, report_exists=False) == "no such injury report"
    for role in ("integrator", "counselor"):
        for exists in (True, False):
            reason = domain.health_details_refusal(role=role, report_exists=exists)
            assert reason == f"role {role} may not read injury details"


def test_a_receipt_is_the_same_receipt_however_it_is_typed() -> None:
    from services.membership.domain import PaperReceipt

    paid = date(2016, 7, 1)
    full_width = "".join(chr(ord(c) + 0xFEE0) for c in "JG-2016-000417")  # as an IME types it
    typings = ["JG-2016-000417", " jg 2016 000417 ", full_width, "jg_2016/000417"]
    assert {PaperReceipt(t, paid).key for t in typings} == {"JG2016000417"}
    assert PaperReceipt("JG-2016-000418", paid).key != PaperReceipt("JG-2016-000417", paid).key
    assert PaperReceipt(" - / ", paid).key == ""  # refused by enroll: nothing to tell receipts apart
