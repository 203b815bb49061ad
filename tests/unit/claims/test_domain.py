"""Every rule of services/claims/domain.py, without I/O."""

from __future__ import annotations

import uuid
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from services.claims import domain
from services.claims.domain import (
    ACCIDENT_PLAN,
    CARD_PLAN,
    CardSpell,
    Claim,
    ClaimStatus,
    EnrollmentFact,
    Injury,
    MemberCoverage,
    RejectionReason,
)
from shared.aggregate import Conflict, InvalidInput
from shared.contracts.claims import ClaimApproved, ClaimFiled, ClaimPaid
from shared.contracts.common import Benefit, InjurySeverity
from shared.contracts.plans import DEFAULT_PLANS, ClaimKind

PLANS = {p.code: p for p in DEFAULT_PLANS}
MEMBER = uuid.uuid4()
REPORT = uuid.uuid4()
AUG_2 = date(2016, 8, 2)


def accident(start: date = date(2016, 1, 1), end: date = date(2016, 12, 31), **kw: object) -> EnrollmentFact:
    return EnrollmentFact(uuid.uuid4(), ACCIDENT_PLAN, 1, start, end, **kw)  # type: ignore[arg-type]


def coverage(
    *, card: bool = True, enrollments: tuple[EnrollmentFact, ...] = (), **kw: object
) -> MemberCoverage:
    cards = (CardSpell("1234", date(2015, 3, 1)),) if card else ()
    return MemberCoverage(MEMBER, date(2010, 1, 1), cards=cards, enrollments=enrollments, **kw)  # type: ignore[arg-type]


def injury(day: date = AUG_2, work_related: bool = False, **kw: object) -> Injury:
    return Injury(REPORT, MEMBER, day, work_related, **kw)  # type: ignore[arg-type]


def plans_of(check: domain.EntitlementCheck) -> list[str]:
    return [e.plan_code for e in check.entitlements]


def test_the_seed_case_opens_the_paid_and_the_card_claim_each_with_its_own_checklist() -> None:
    enrolment = accident()
    check = domain.entitlements(injury(), coverage(enrollments=(enrolment,)), PLANS)
    assert plans_of(check) == [ACCIDENT_PLAN, CARD_PLAN]
    paid, card = check.entitlements
    assert paid.benefit is Benefit.PAID and paid.enrollment_id == enrolment.enrollment_id
    assert card.benefit is Benefit.CARD and card.enrollment_id is None
    assert (
        "card_copy" in paid.required_documents and "diagnosis_and_hospital_records" in card.required_documents
    )
    assert paid.claim_id != card.claim_id


def test_work_related_injury_opens_only_the_paid_claim() -> None:
    check = domain.entitlements(injury(work_related=True), coverage(enrollments=(accident(),)), PLANS)
    assert plans_of(check) == [ACCIDENT_PLAN]
    assert any(r.startswith("work_related") for r in check.reasons)


def test_card_without_enrolment_opens_only_the_card_claim() -> None:
    check = domain.entitlements(injury(), coverage(), PLANS)
    assert plans_of(check) == [CARD_PLAN]
    assert any(r.startswith("no_enrollment") for r in check.reasons)


@pytest.mark.parametrize(
    "enrolment",
    [
        accident(date(2015, 1, 1), date(2015, 12, 31)),  # expired
        accident(date(2016, 9, 1), date(2017, 8, 31)),  # not started yet
        accident(cancelled_on=date(2016, 7, 1)),  # cancelled before the injury
    ],
)
def test_enrolment_not_covering_the_injury_date_opens_no_paid_claim(enrolment: EnrollmentFact) -> None:
    check = domain.entitlements(injury(), coverage(card=False, enrollments=(enrolment,)), PLANS)
    assert check.entitlements == ()
    assert any(r.startswith("not_covered_on_date") for r in check.reasons)


def test_coverage_boundaries_are_inclusive_of_start_and_end_day() -> None:
    e = accident(date(2016, 8, 2), date(2017, 8, 1))
    assert e.covers(date(2016, 8, 2)) and e.covers(date(2017, 8, 1))
    assert not e.covers(date(2016, 8, 1)) and not e.covers(date(2017, 8, 2))


def test_neither_card_nor_enrolment_gives_reasons_and_no_claims() -> None:
    check = domain.entitlements(injury(), coverage(card=False), PLANS)
    assert check.entitlements == ()
    assert [r.split(":")[0] for r in check.reasons] == ["no_enrollment", "no_active_card"]


def test_card_cancelled_before_the_injury_does_not_count_but_one_cancelled_after_does() -> None:
    before = MemberCoverage(
        MEMBER, date(2010, 1, 1), cards=(CardSpell("1", date(2015, 1, 1), date(2016, 8, 1)),)
    )
    after = MemberCoverage(
        MEMBER, date(2010, 1, 1), cards=(CardSpell("1", date(2015, 1, 1), date(2016, 8, 3)),)
    )
    assert plans_of(domain.entitlements(injury(), before, PLANS)) == []
    assert plans_of(domain.entitlements(injury(), after, PLANS)) == [CARD_PLAN]


def test_unknown_or_former_member_gets_nothing_with_a_reason() -> None:
    assert domain.entitlements(injury(), None, PLANS).reasons[0].startswith("member_unknown")
    before_joining = MemberCoverage(MEMBER, date(2016, 8, 3), enrollments=(accident(),))
    assert domain.entitlements(injury(), before_joining, PLANS).reasons[0].startswith("not_a_member_on_date")
    left = coverage(card=False, left_on=date(2016, 6, 30))
    assert domain.entitlements(injury(), left, PLANS).entitlements == ()


def test_closing_a_paid_plan_to_new_enrolments_does_not_take_existing_cover_away() -> None:
    closed = {**PLANS, ACCIDENT_PLAN: PLANS[ACCIDENT_PLAN].model_copy(update={"active": False})}
    check = domain.entitlements(injury(), coverage(enrollments=(accident(),)), closed)
    assert plans_of(check) == [ACCIDENT_PLAN, CARD_PLAN]


def test_a_withdrawn_card_benefit_opens_no_card_claim() -> None:
    withdrawn = {**PLANS, CARD_PLAN: PLANS[CARD_PLAN].model_copy(update={"active": False})}
    check = domain.entitlements(injury(), coverage(enrollments=(accident(),)), withdrawn)
    assert plans_of(check) == [ACCIDENT_PLAN]
    assert any(r.startswith("plan_inactive: card_non_work_accident") for r in check.reasons)


def test_an_injury_plan_added_to_the_catalogue_opens_claims_by_itself() -> None:
    extra = PLANS[ACCIDENT_PLAN].model_copy(update={"code": "commuting_accident"})
    enrolment = EnrollmentFact(uuid.uuid4(), "commuting_accident", 1, date(2016, 1, 1), date(2016, 12, 31))
    check = domain.entitlements(
        injury(), coverage(card=False, enrollments=(enrolment,)), {**PLANS, extra.code: extra}
    )
    assert plans_of(check) == ["commuting_accident"]
    assert any(r.startswith("no_enrollment: no accident_injury") for r in check.reasons)


def test_the_card_benefit_covers_the_day_of_leaving_but_not_the_day_after() -> None:
    left = coverage(left_on=AUG_2)
    assert plans_of(domain.entitlements(injury(AUG_2), left, PLANS)) == [CARD_PLAN]
    after = domain.entitlements(injury(date(2016, 8, 3)), left, PLANS)
    assert after.entitlements == ()
    assert f"member_left: the Jing card benefit ended when the member left on {AUG_2}" in after.reasons


def test_a_paid_enrolment_stays_in_force_after_leaving_to_its_end_date() -> None:
    left = coverage(enrollments=(accident(end=date(2016, 12, 31)),), left_on=AUG_2)
    assert plans_of(domain.entitlements(injury(AUG_2), left, PLANS)) == [ACCIDENT_PLAN, CARD_PLAN]
    assert plans_of(domain.entitlements(injury(date(2016, 8, 3)), left, PLANS)) == [ACCIDENT_PLAN]
    assert plans_of(domain.entitlements(injury(date(2016, 12, 31)), left, PLANS)) == [ACCIDENT_PLAN]
    last = domain.entitlements(injury(date(2017, 1, 1)), left, PLANS)
    assert last.entitlements == ()
    assert [r.split(":")[0] for r in last.reasons] == ["not_covered_on_date", "member_left"]


def test_claim_ids_are_derived_so_a_redelivered_report_names_the_same_claims() -> None:
    e = accident()
    first = domain.entitlements(injury(), coverage(enrollments=(e,)), PLANS)
    again = domain.entitlements(injury(), coverage(enrollments=(e,)), PLANS)
    assert [x.claim_id for x in first.entitlements] == [x.claim_id for x in again.entitlements]
    other = domain.entitlements(Injury(uuid.uuid4(), MEMBER, AUG_2, False), coverage(enrollments=(e,)), PLANS)
    assert not {x.claim_id for x in first.entitlements} & {x.claim_id for x in other.entitlements}


def test_two_accident_enrolments_covering_the_day_open_two_paid_claims() -> None:
    check = domain.entitlements(injury(), coverage(card=False, enrollments=(accident(), accident())), PLANS)
    assert plans_of(check) == [ACCIDENT_PLAN, ACCIDENT_PLAN]


def test_checklist_grows_for_traffic_accident_disability_and_death() -> None:
    base = domain.required_documents(ClaimKind.INJURY)
    assert base == ("union_incident_certificate", "diagnosis_and_hospital_records", "id_copy", "card_copy")
    traffic = domain.required_documents(
        ClaimKind.INJURY, traffic_accident=True, severity=InjurySeverity.DEATH
    )
    assert "traffic_accident_certificate" in traffic and "death_certificate" in traffic
    assert "disability_assessment" in domain.required_documents(
        ClaimKind.INJURY, severity=InjurySeverity.DISABILITY
    )


# --- limits and waiting periods ----------------------------------------------------------------


FEMALE = PLANS["female_special_disease"]
START = date(2016, 1, 1)


@pytest.mark.parametrize(
    ("day", "limit"),
    [
        (date(2016, 1, 20), Decimal(0)),
        (date(2016, 1, 31), Decimal(0)),  # day 30: still within the 30 days
        (date(2016, 2, 1), Decimal(500)),  # day 31
        (date(2016, 3, 1), Decimal(500)),  # day 60
        (date(2016, 3, 2), Decimal(30000)),  # day 61: full benefit, 15,000 x 2 shares
    ],
)
def test_female_special_disease_waiting_period(day: date, limit: Decimal) -> None:
    assert domain.benefit_limit(FEMALE, 2, START, day).amount == limit


def test_limits_take_the_smaller_of_per_share_and_cap() -> None:
    assert domain.benefit_limit(PLANS[ACCIDENT_PLAN], 2, START, AUG_2).amount == Decimal(120000)
    assert domain.benefit_limit(PLANS[CARD_PLAN], 1, None, AUG_2).amount == Decimal(20000)
    assert domain.benefit_limit(PLANS["critical_illness"], 1, START, AUG_2).amount is None


def test_illness_claim_rules() -> None:
    e = EnrollmentFact(uuid.uuid4(), FEMALE.code, 1, START, date(2016, 12, 31))
    assert domain.illness_claim_check(FEMALE, e, date(2016, 1, 10)).amount == 0
    with pytest.raises(InvalidInput) as wrong_kind:
        domain.illness_claim_check(PLANS[ACCIDENT_PLAN], e, AUG_2)
    assert wrong_kind.value.field == "plan_code"
    with pytest.raises(InvalidInput):
        domain.illness_claim_check(FEMALE, None, AUG_2)
    with pytest.raises(Conflict):
        domain.illness_claim_check(FEMALE, e, date(2017, 2, 1))


# --- the claim lifecycle -----------------------------------------------------------------------


def filed() -> Claim:
    claim = Claim(uuid.uuid4())
    claim.file(
        member_id=MEMBER,
        plan_code=ACCIDENT_PLAN,
        benefit=Benefit.PAID,
        enrollment_id=uuid.uuid4(),
        report_id=REPORT,
        required=domain.required_documents(ClaimKind.INJURY),
        incident_on=AUG_2,
        today=AUG_2,
    )
    claim.mark_saved()
    return claim


LIMIT = domain.BenefitLimit(Decimal(1000), "plan limit")


def test_documents_partial_then_complete_then_approved_then_paid() -> None:
    claim = filed()
    claim.receive_documents(["id_copy", "card_copy"])
    assert claim.state.status is ClaimStatus.DOCUMENTS_PARTIAL
    claim.receive_documents(["union_incident_certificate", "diagnosis_and_hospital_records"])
    assert claim.state.status is ClaimStatus.DOCUMENTS_COMPLETE
    claim.approve(Decimal("800.50"), LIMIT, AUG_2)
    claim.pay(AUG_2)
    assert claim.state.status is ClaimStatus.PAID
    kinds = [type(e) for e in claim.pending_events]
    assert kinds[-2:] == [ClaimApproved, ClaimPaid]
    paid = claim.pending_events[-1]
    assert isinstance(paid, ClaimPaid) and paid.amount == Decimal("800.50")


def test_replaying_the_events_rebuilds_the_same_state() -> None:
    claim = filed()
    claim.receive_documents(list(claim.state.required))
    history = [
        ClaimFiled(
            claim_id=claim.id,
            member_id=MEMBER,
            report_id=REPORT,
            plan_code=ACCIDENT_PLAN,
            benefit=Benefit.PAID,
            enrollment_id=None,
            required_documents=list(claim.state.required),
            incident_on=AUG_2,
            filed_on=AUG_2,
        ),
        *claim.pending_events,
    ]
    again = Claim.rehydrate(claim.id, history)
    assert again.state.status is ClaimStatus.DOCUMENTS_COMPLETE and again.version == 2


def test_approving_before_documents_are_complete_is_a_conflict_naming_what_is_missing() -> None:
    claim = filed()
    claim.receive_documents(["id_copy"])
    with pytest.raises(Conflict, match="still missing: union_incident_certificate"):
        claim.approve(Decimal(100), LIMIT, AUG_2)


def test_approving_above_the_limit_is_a_conflict() -> None:
    claim = filed()
    claim.receive_documents(list(claim.state.required))
    with pytest.raises(Conflict, match="exceeds the limit of 1000"):
        claim.approve(Decimal(1001), LIMIT, AUG_2)


def test_paying_a_rejected_or_unapproved_claim_is_a_conflict() -> None:
    claim = filed()
    with pytest.raises(Conflict, match="only an approved claim"):
        claim.pay(AUG_2)
    claim.reject(RejectionReason.EXCLUDED, "pre-existing", AUG_2)
    with pytest.raises(Conflict, match="is rejected"):
        claim.pay(AUG_2)
    with pytest.raises(Conflict):
        claim.reject(RejectionReason.OTHER, None, AUG_2)


def test_documents_not_on_the_checklist_are_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        filed().receive_documents(["death_certificate"])
    assert err.value.field == "documents"


def test_filing_twice_is_a_conflict() -> None:
    claim = filed()
    with pytest.raises(Conflict):
        claim.file(
            member_id=MEMBER,
            plan_code=CARD_PLAN,
            benefit=Benefit.CARD,
            enrollment_id=None,
            report_id=REPORT,
            required=(),
            incident_on=AUG_2,
            today=AUG_2,
        )


# --- late reports --------------------------------------------------------------------------------


def test_a_report_exactly_two_years_after_the_injury_is_in_time_the_day_after_is_late() -> None:
    cover = coverage(enrollments=(accident(),))
    on_time = domain.entitlements(injury(reported_on=date(2018, 8, 2)), cover, PLANS)
    assert plans_of(on_time) == [ACCIDENT_PLAN, CARD_PLAN]
    late = domain.entitlements(injury(reported_on=date(2018, 8, 3)), cover, PLANS)
    assert late.entitlements == ()
    assert [r.split(":")[0] for r in late.reasons] == ["reporting_limit_passed", "reporting_limit_passed"]
    assert (
        f"reporting_limit_passed: {ACCIDENT_PLAN} incidents must be reported within 24 months"
        in (late.reasons[0])
    )
    assert "(by 2018-08-02)" in late.reasons[0]


def test_two_years_are_counted_on_dates_from_a_29_february() -> None:
    cover = MemberCoverage(MEMBER, date(2010, 1, 1), cards=(CardSpell("1234", date(2015, 3, 1)),))
    leap = Injury(REPORT, MEMBER, date(2016, 2, 29), False, reported_on=date(2018, 2, 28))
    assert plans_of(domain.entitlements(leap, cover, PLANS)) == [CARD_PLAN]
    late = Injury(REPORT, MEMBER, date(2016, 2, 29), False, reported_on=date(2018, 3, 1))
    assert domain.entitlements(late, cover, PLANS).entitlements == ()
    assert domain.reporting_deadline(PLANS[CARD_PLAN], date(2016, 2, 29)) == date(2018, 2, 28)


def test_a_plan_may_set_its_own_reporting_limit_and_only_that_plan_is_refused() -> None:
    strict = {**PLANS, CARD_PLAN: PLANS[CARD_PLAN].model_copy(update={"reporting_limit_months": 6})}
    cover = coverage(enrollments=(accident(),))
    check = domain.entitlements(injury(reported_on=date(2017, 2, 3)), cover, strict)
    assert plans_of(check) == [ACCIDENT_PLAN]
    assert any(r.startswith(f"reporting_limit_passed: {CARD_PLAN}") for r in check.reasons)
    assert plans_of(domain.entitlements(injury(reported_on=date(2017, 2, 2)), cover, strict)) == [
        ACCIDENT_PLAN,
        CARD_PLAN,
    ]


def test_the_entitlements_view_without_a_report_date_applies_no_limit() -> None:
    assert plans_of(domain.entitlements(injury(), coverage(), PLANS)) == [CARD_PLAN]
    assert PLANS[ACCIDENT_PLAN].reporting_limit_months == 24  # the default: two years


# --- no backdating: an enrolment recorded after the report never covers it -----------------------


def test_an_enrolment_recorded_after_the_report_does_not_cover_it_one_recorded_that_day_does() -> None:
    after = accident(recorded_on=date(2016, 8, 5))
    same_day = accident(recorded_on=date(2016, 8, 4))
    reported = injury(reported_on=date(2016, 8, 4))
    check = domain.entitlements(reported, coverage(card=False, enrollments=(after,)), PLANS)
    assert check.entitlements == ()
    assert check.reasons[0].startswith("enrolled_after_report: accident_injury")
    both = domain.entitlements(reported, coverage(card=False, enrollments=(after, same_day)), PLANS)
    assert [e.enrollment_id for e in both.entitlements] == [same_day.enrollment_id]
    # events written before recorded_on existed, and the "what if" view, apply no such rule
    assert plans_of(
        domain.entitlements(reported, coverage(card=False, enrollments=(accident(),)), PLANS)
    ) == [ACCIDENT_PLAN]
    assert plans_of(domain.entitlements(injury(), coverage(card=False, enrollments=(after,)), PLANS)) == [
        ACCIDENT_PLAN
    ]


def test_the_member_stream_version_tells_a_same_day_enrolment_after_the_report_from_one_before() -> None:
    day = date(2016, 8, 4)
    before = accident(recorded_on=day, recorded_version=2)
    after = accident(recorded_on=day, recorded_version=3)
    reported = injury(reported_on=day, member_version=2)
    check = domain.entitlements(reported, coverage(card=False, enrollments=(before, after)), PLANS)
    assert [e.enrollment_id for e in check.entitlements] == [before.enrollment_id]
    only_after = domain.entitlements(reported, coverage(card=False, enrollments=(after,)), PLANS)
    assert only_after.entitlements == ()
    assert only_after.reasons[0].startswith("enrolled_after_report: accident_injury")
    # a later recording day is late whatever the versions say; the "what if" view has no report
    later_day = accident(recorded_on=date(2016, 8, 5), recorded_version=1)
    late = domain.entitlements(reported, coverage(card=False, enrollments=(later_day,)), PLANS)
    assert late.entitlements == ()
    assert plans_of(domain.entitlements(injury(), coverage(card=False, enrollments=(after,)), PLANS)) == [
        ACCIDENT_PLAN
    ]


def test_a_report_is_decided_on_the_member_stream_as_it_was_at_its_member_version() -> None:
    """Facts recorded after the report (at a later version), however they are dated, change
    nothing: a backdated leave, a backdated card, a backdated cancellation."""
    held = accident(recorded_version=2)
    at_report = MemberCoverage(
        MEMBER,
        date(2010, 1, 1),
        cards=(CardSpell("1234", date(2015, 3, 1), issued_version=1),),
        enrollments=(held,),
    )
    reported = injury(reported_on=date(2016, 8, 3), member_version=2)
    assert plans_of(domain.entitlements(reported, at_report, PLANS)) == [ACCIDENT_PLAN, CARD_PLAN]
    later = MemberCoverage(
        MEMBER,
        date(2010, 1, 1),
        left_on=date(2016, 7, 15),
        left_version=5,
        cards=(
            CardSpell("1234", date(2015, 3, 1), date(2016, 7, 1), issued_version=1, cancelled_version=3),
            CardSpell("9999", date(2016, 7, 1), issued_version=4),
        ),
        enrollments=(replace(held, cancelled_on=date(2016, 7, 20), cancelled_version=6),),
    )
    assert plans_of(domain.entitlements(reported, later, PLANS)) == [ACCIDENT_PLAN, CARD_PLAN]
    # the same facts recorded before the report do count
    before = injury(reported_on=date(2016, 8, 3), member_version=6)
    assert plans_of(domain.entitlements(before, later, PLANS)) == []
    # a card recorded after the report, backdated before the injury, opens nothing
    no_card = MemberCoverage(
        MEMBER, date(2010, 1, 1), cards=(CardSpell("9999", date(2016, 7, 1), issued_version=3),)
    )
    check = domain.entitlements(injury(reported_on=date(2016, 8, 3), member_version=2), no_card, PLANS)
    assert check.entitlements == () and any(r.startswith("no_active_card") for r in check.reasons)
