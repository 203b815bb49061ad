"""Claims handlers over the in-memory unit of work: the rules around loading and saving, in
milliseconds. The reads a rule needs (catalogue, enrolment facts) are replaced in ``views``."""

from __future__ import annotations

import uuid
from datetime import date, timedelta
from decimal import Decimal

import pytest

from services.claims import domain, handlers, views
from services.claims.domain import EnrollmentFact
from services.claims.schemas import ApproveIn, IllnessClaimIn, RejectIn
from shared.aggregate import Conflict, InvalidInput, NotFound
from shared.clock import fixed
from shared.contracts.claims import ClaimApproved, ClaimFiled, ClaimPaid, ClaimRejected
from shared.contracts.plans import DEFAULT_PLANS
from tests.fakes import FakeUnitOfWork

TODAY = date(2016, 8, 10)
CLOCK = fixed(TODAY)
PLANS = {p.code: p for p in DEFAULT_PLANS}
MEMBER = uuid.uuid4()
START = TODAY - timedelta(days=45)
FEMALE = EnrollmentFact(uuid.uuid4(), "female_special_disease", 1, START, START + timedelta(days=364))


@pytest.fixture(autouse=True)
def reads(monkeypatch: pytest.MonkeyPatch) -> None:
    async def load_plans(conn: object) -> dict[str, object]:
        return dict(PLANS)

    async def enrollment_fact(conn: object, enrollment_id: uuid.UUID | None) -> EnrollmentFact | None:
        return FEMALE if enrollment_id == FEMALE.enrollment_id else None

    async def enrollment_member(conn: object, enrollment_id: uuid.UUID) -> uuid.UUID | None:
        return MEMBER if enrollment_id == FEMALE.enrollment_id else None

    monkeypatch.setattr(handlers, "load_plans", load_plans)
    monkeypatch.setattr(views, "enrollment_fact", enrollment_fact)
    monkeypatch.setattr(views, "enrollment_member", enrollment_member)


def illness(days_after_start: int, member: uuid.UUID = MEMBER) -> IllnessClaimIn:
    return IllnessClaimIn(
        member_id=member,
        plan_code="female_special_disease",
        enrollment_id=FEMALE.enrollment_id,
        incident_on=START + timedelta(days=days_after_start),
    )


async def test_an_illness_claim_inside_the_waiting_period_is_filed_and_rejected_at_once() -> None:
    uow = FakeUnitOfWork()
    claim = await handlers.file_illness_claim(uow, illness(10), CLOCK)
    assert claim.state.status is domain.ClaimStatus.REJECTED
    filed, rejected = uow.events(claim.id)
    assert isinstance(filed, ClaimFiled) and filed.filed_on == TODAY
    assert isinstance(rejected, ClaimRejected) and rejected.reason_code == "waiting_period"


async def test_filing_the_same_illness_claim_twice_is_a_conflict() -> None:
    uow = FakeUnitOfWork()
    await handlers.file_illness_claim(uow, illness(40), CLOCK)
    with pytest.raises(Conflict):
        await handlers.file_illness_claim(uow, illness(40), CLOCK)


async def test_an_incident_after_the_clocks_today_is_refused() -> None:
    with pytest.raises(InvalidInput) as err:
        await handlers.file_illness_claim(FakeUnitOfWork(), illness(46), CLOCK)
    assert err.value.field == "incident_on"


async def test_someone_elses_enrolment_is_no_enrolment() -> None:
    with pytest.raises(InvalidInput) as err:
        await handlers.file_illness_claim(FakeUnitOfWork(), illness(40, member=uuid.uuid4()), CLOCK)
    assert err.value.field == "enrollment_id"


async def test_approval_is_bounded_by_the_plan_and_dated_by_the_clock_then_paid() -> None:
    uow = FakeUnitOfWork()
    claim = await handlers.file_illness_claim(uow, illness(40), CLOCK)
    claim.receive_documents(list(claim.state.required))
    await uow.save(claim)
    with pytest.raises(Conflict):
        await handlers.approve(uow, ApproveIn(amount=Decimal("501")), CLOCK, claim_id=claim.id)
    later = fixed(TODAY + timedelta(days=3))
    await handlers.approve(uow, ApproveIn(amount=Decimal("500")), later, claim_id=claim.id)
    paid = await handlers.pay(uow, later, claim_id=claim.id)
    assert paid.state.status is domain.ClaimStatus.PAID
    *_, approved, payment = uow.events(claim.id)
    assert isinstance(approved, ClaimApproved) and approved.approved_on == TODAY + timedelta(days=3)
    assert isinstance(payment, ClaimPaid) and payment.amount == Decimal("500")


async def test_commands_on_an_unknown_claim_are_not_found() -> None:
    with pytest.raises(NotFound):
        await handlers.reject(
            FakeUnitOfWork(), RejectIn(reason_code=domain.RejectionReason.OTHER), CLOCK, claim_id=uuid.uuid4()
        )
