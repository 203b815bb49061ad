"""Adversarial review of issue 17, pure boundaries: all PASSING regression guards for attacks the
code withstood (Beijing midnight, the recording day by version and by date, the leaving day,
reporting limits across month ends and 29 February, hostile typed identifiers)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from services.claims import domain as claims
from services.membership import domain as membership
from shared.aggregate import InvalidInput
from shared.clock import BEIJING, beijing_date
from shared.contracts.common import Gender
from shared.contracts.plans import DEFAULT_PLANS
from tests.identifiers import luhn_complete, national_id

PLANS = {p.code: p for p in DEFAULT_PLANS}
ACCIDENT = PLANS["accident_injury"]


def test_passing_the_business_day_turns_at_beijing_midnight_not_utc_midnight() -> None:
    assert beijing_date(datetime(2016, 8, 9, 15, 59, 59, 999999, tzinfo=UTC)) == date(2016, 8, 9)
    assert beijing_date(datetime(2016, 8, 9, 16, 0, tzinfo=UTC)) == date(2016, 8, 10)
    assert beijing_date(datetime(2016, 8, 9, 16, 0)) == date(2016, 8, 10)  # naive = UTC
    assert beijing_date(datetime(2016, 8, 10, 0, 0, tzinfo=BEIJING)) == date(2016, 8, 10)
    # 29 February at Beijing midnight
    assert beijing_date(datetime(2016, 2, 28, 16, 0, tzinfo=UTC)) == date(2016, 2, 29)


def _fact(recorded_on: date | None, version: int | None) -> claims.EnrollmentFact:
    return claims.EnrollmentFact(
        uuid.uuid4(), ACCIDENT.code, 1, date(2016, 7, 1), date(2017, 6, 30), None, recorded_on, version
    )


def _injury(reported_on: date | None, member_version: int | None) -> claims.Injury:
    return claims.Injury(
        uuid.uuid4(),
        uuid.uuid4(),
        date(2016, 8, 2),
        False,
        reported_on=reported_on,
        member_version=member_version,
    )


@pytest.mark.parametrize(
    ("recorded_on", "version", "reported_on", "member_version", "after"),
    [
        (date(2016, 8, 4), 2, date(2016, 8, 4), 2, False),  # the report counted it: same day, before
        (date(2016, 8, 4), 3, date(2016, 8, 4), 2, True),  # same day, one version later: after
        (date(2016, 8, 3), 3, date(2016, 8, 4), 2, True),  # version beats an earlier date
        (date(2016, 8, 5), None, date(2016, 8, 4), 2, True),  # no version: the dates judge
        (date(2016, 8, 4), None, date(2016, 8, 4), 2, False),  # recorded on the report's day
        (None, None, date(2016, 8, 4), 2, False),  # nothing known (old events): covers
        (date(2016, 8, 5), 9, None, None, False),  # a "what if" of the entitlements view
    ],
)
def test_passing_recorded_after_the_report_by_version_then_by_date(
    recorded_on: date | None,
    version: int | None,
    reported_on: date | None,
    member_version: int | None,
    after: bool,
) -> None:
    assert _fact(recorded_on, version).recorded_after(_injury(reported_on, member_version)) is after


@pytest.mark.parametrize(
    ("occurred", "months", "deadline"),
    [
        (date(2016, 2, 29), 24, date(2018, 2, 28)),
        (date(2016, 2, 29), 48, date(2020, 2, 29)),
        (date(2016, 1, 31), 1, date(2016, 2, 29)),
        (date(2015, 1, 31), 1, date(2015, 2, 28)),
        (date(2016, 8, 31), 120, date(2026, 8, 31)),
        (date(2016, 12, 31), 1, date(2017, 1, 31)),
    ],
)
def test_passing_reporting_deadline_clamps_to_the_month_end(
    occurred: date, months: int, deadline: date
) -> None:
    plan = ACCIDENT.model_copy(update={"reporting_limit_months": months})
    assert claims.reporting_deadline(plan, occurred) == deadline
    coverage = claims.MemberCoverage(
        uuid.uuid4(),
        date(2000, 1, 1),
        enrollments=(
            claims.EnrollmentFact(
                uuid.uuid4(), plan.code, 1, date(2000, 1, 1), date(2030, 12, 31), None, None, 1
            ),
        ),
    )

    def decide(reported_on: date) -> tuple[str, ...]:
        injury = claims.Injury(
            uuid.uuid4(), coverage.member_id, occurred, False, reported_on=reported_on, member_version=5
        )
        return claims.entitlements(injury, coverage, {plan.code: plan}).reasons

    assert decide(deadline)[0].startswith("covered")
    assert decide(deadline + timedelta(days=1))[0].startswith("reporting_limit_passed")


def test_passing_the_card_benefit_covers_the_day_of_leaving_and_not_the_next_in_both_services() -> None:
    card_plan = PLANS[claims.CARD_PLAN]
    left_on = date(2016, 8, 2)
    coverage = claims.MemberCoverage(
        uuid.uuid4(), date(2012, 5, 1), left_on, cards=(claims.CardSpell("4321", date(2015, 3, 1)),)
    )

    def card_claims(day: date) -> int:
        injury = claims.Injury(
            uuid.uuid4(), coverage.member_id, day, False, reported_on=day, member_version=3
        )
        return len(claims.entitlements(injury, coverage, {card_plan.code: card_plan}).entitlements)

    assert card_claims(left_on) == 1
    assert card_claims(left_on + timedelta(days=1)) == 0
    # membership agrees on the day of leaving (is_member_on is inclusive)
    member = membership.Member(uuid.uuid4())
    member.joined_on, member.left_on = date(2012, 5, 1), left_on
    assert member.is_member_on(left_on) and not member.is_member_on(left_on + timedelta(days=1))


@pytest.mark.parametrize(
    "raw",
    [
        "\u3000{nid}\u3000",  # ideographic spaces around: trimmed, accepted
        "{nid_lower}",
    ],
)
def test_passing_national_id_trimming_and_lower_case_x(raw: str) -> None:
    nid = next(n for n in (national_id(date(1981, 7, 9), serial=s) for s in range(500)) if n.endswith("X"))
    assert membership.parse_national_id(raw.format(nid=nid, nid_lower=nid.lower())) == nid


@pytest.mark.parametrize(
    "mangle",
    [
        lambda n: "".join(chr(ord(c) + 0xFEE0) for c in n),  # full-width
        lambda n: n[:17] + "\u0425",  # Cyrillic Ha looks like X
        lambda n: n[:6] + "\u0663" + n[7:],  # an Arabic-Indic digit
        lambda n: n[:6] + "\u00b9" + n[7:],  # superscript one: int() would take it, the regex must not
        lambda n: n[:9] + "\n" + n[9:],  # a newline inside (around it is trimmed, as spaces are)
        lambda n: n + "\u200b",
        lambda n: n[:9] + " " + n[9:],
    ],
)
def test_passing_hostile_national_id_spellings_are_invalid_input_naming_national_id(mangle: object) -> None:
    nid = national_id(date(1980, 5, 20))
    assert callable(mangle)
    with pytest.raises(InvalidInput) as caught:
        membership.parse_national_id(mangle(nid))
    assert caught.value.field == "national_id" and nid not in str(caught.value)


def test_passing_the_id_gender_digit_and_birth_date_cross_check_at_29_february() -> None:
    nid = national_id(date(1984, 2, 29), female=True)
    membership.check_national_id_matches(nid, birth_date=date(1984, 2, 29), gender=Gender.FEMALE)
    for birth, gender, field in (
        (date(1984, 2, 28), Gender.FEMALE, "birth_date"),
        (date(1984, 3, 1), Gender.FEMALE, "birth_date"),
        (date(1984, 2, 29), Gender.MALE, "gender"),
    ):
        with pytest.raises(InvalidInput) as caught:
            membership.check_national_id_matches(nid, birth_date=birth, gender=gender)
        assert caught.value.field == field


@pytest.mark.parametrize(
    "spelling",
    ["{n}", "{a} {b} {c} {d}", "{a}-{b}-{c}-{d}", "\u3000{n}\t", "({a}) {b}-{c} {d}"],
)
def test_passing_card_number_separators_are_dropped(spelling: str) -> None:
    number = luhn_complete("622848001234567")
    a, b, c, d = number[:4], number[4:8], number[8:12], number[12:]
    assert membership.parse_card_number(spelling.format(n=number, a=a, b=b, c=c, d=d)) == number


@pytest.mark.parametrize(
    "bad",
    [
        "".join(chr(ord(c) + 0xFEE0) for c in luhn_complete("622848001234567")),
        luhn_complete("622848001234567")[:-1] + "\u0663",
        luhn_complete("6228480012345670000"),  # 20 digits
        "6228480012345678",  # a wrong Luhn digit
        "",
        "--------",
    ],
)
def test_passing_bad_card_numbers_are_invalid_card_number(bad: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        membership.parse_card_number(bad)
    assert (caught.value.field, caught.value.code) == ("card_number", "invalid_card_number")
