"""Membership handlers over the in-memory unit of work: defaults from the clock, lookups, the
answers ``views`` make of what handlers return; in milliseconds."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from services.membership import handlers, views
from services.membership.domain import Member, Union
from services.membership.schemas import EnrollmentCancelIn, EnrollmentIn, LeaveIn, TransferIn, UnionIn
from shared.aggregate import Conflict, InvalidInput, NotFound
from shared.clock import fixed
from shared.contracts.common import Gender
from shared.contracts.membership import LeaveReason, MemberTransferred, PlanEnrolled, UnionLevel
from shared.contracts.plans import DEFAULT_PLANS, Plan
from tests.fakes import FakeUnitOfWork

TODAY = date(2016, 8, 10)
CLOCK = fixed(TODAY)
PLANS = {p.code: p for p in DEFAULT_PLANS}


def chain(uow: FakeUnitOfWork) -> dict[UnionLevel, Union]:
    out: dict[UnionLevel, Union] = {}
    parent: Union | None = None
    for level in UnionLevel:
        union = Union(uuid.uuid4())
        union.register(name=f"{level} union", level=level, parent=parent)
        uow.given(union)
        out[level] = parent = union
    return out


def street_with_two_grassroots(uow: FakeUnitOfWork) -> tuple[Union, Union]:
    tree = chain(uow)
    other = Union(uuid.uuid4())
    other.register(name="second grassroots", level=UnionLevel.GRASSROOTS, parent=tree[UnionLevel.STREET])
    uow.given(other)
    return tree[UnionLevel.GRASSROOTS], other


def member_of(uow: FakeUnitOfWork, union: Union, *, card: bool = True) -> Member:
    member = Member(uuid.uuid4())
    member.join(
        union=union,
        full_name="王小明",
        gender=Gender.MALE,
        birth_date=date(1980, 5, 20),
        joined_on=date(2012, 5, 1),
        today=TODAY,
    )
    if card:
        member.issue_card(card_number="6210300012375678", issued_on=date(2015, 3, 1), today=TODAY)
    uow.given(member)
    return member


@pytest.fixture(autouse=True)
def catalogue(monkeypatch: pytest.MonkeyPatch) -> None:
    async def plan_by_code(conn: object, code: str) -> Plan | None:
        return PLANS.get(code)

    monkeypatch.setattr(views, "plan_by_code", plan_by_code)


async def test_a_union_under_its_parent_answers_its_id() -> None:
    uow = FakeUnitOfWork()
    street = chain(uow)[UnionLevel.STREET]
    union = await handlers.register_union(
        uow, UnionIn(name="社区", level=UnionLevel.GRASSROOTS, parent_id=street.id)
    )
    assert views.union_created(union) == {"union_id": str(union.id)}
    assert (await uow.get(Union, union.id, "union")).parent_id == street.id


async def test_a_transfer_without_a_date_happens_on_the_clocks_today() -> None:
    uow = FakeUnitOfWork()
    first, second = street_with_two_grassroots(uow)
    member = member_of(uow, first)
    moved = await handlers.transfer_member(uow, TransferIn(to_union_id=second.id), CLOCK, member_id=member.id)
    assert views.transfer_answer(moved) == {
        "member_id": str(member.id),
        "union_id": str(second.id),
        "transferred_on": "2016-08-10",
    }
    assert isinstance(uow.events(member.id)[-1], MemberTransferred)


async def test_leaving_twice_is_a_conflict_and_an_unknown_member_not_found() -> None:
    uow = FakeUnitOfWork()
    member = member_of(uow, chain(uow)[UnionLevel.GRASSROOTS])
    left = await handlers.leave(uow, LeaveIn(reason=LeaveReason.MOVED), CLOCK, member_id=member.id)
    assert views.leave_answer(left)["left_on"] == "2016-08-10"
    with pytest.raises(Conflict):
        await handlers.leave(uow, LeaveIn(reason=LeaveReason.MOVED), CLOCK, member_id=member.id)
    with pytest.raises(NotFound):
        await handlers.leave(uow, LeaveIn(reason=LeaveReason.MOVED), CLOCK, member_id=uuid.uuid4())


async def test_enrolling_in_a_plan_the_catalogue_does_not_hold_names_the_field() -> None:
    uow = FakeUnitOfWork()
    member = member_of(uow, chain(uow)[UnionLevel.GRASSROOTS])
    command = EnrollmentIn(plan_code="no_such_plan", shares=1, starts_on=TODAY)
    with pytest.raises(InvalidInput) as err:
        await handlers.enroll(uow, command, CLOCK, member_id=member.id)
    assert (err.value.field, err.value.code) == ("plan_code", "unknown_plan")


async def test_an_enrolment_is_saved_answered_and_cancelled_on_the_clocks_today() -> None:
    uow = FakeUnitOfWork()
    member = member_of(uow, chain(uow)[UnionLevel.GRASSROOTS])
    command = EnrollmentIn(plan_code="accident_injury", shares=2, starts_on=TODAY)
    enrollment = await handlers.enroll(uow, command, CLOCK, member_id=member.id)
    assert views.enrollment_created(enrollment) == {
        "enrollment_id": str(enrollment.enrollment_id),
        "plan_code": "accident_injury",
        "shares": 2,
        "starts_on": "2016-08-10",
        "ends_on": "2017-08-09",
        "recorded_late": False,
        "paid_on": None,
    }
    assert isinstance(uow.events(member.id)[-1], PlanEnrolled)
    cancelled = await handlers.cancel_enrollment(
        uow, EnrollmentCancelIn(), CLOCK, member_id=member.id, enrollment_id=enrollment.enrollment_id
    )
    assert views.enrollment_cancelled(cancelled)["cancelled_on"] == "2016-08-10"


async def test_a_paper_enrolment_keeps_its_receipt_out_of_the_event(monkeypatch: pytest.MonkeyPatch) -> None:
    kept: list[dict[str, object]] = []

    async def record(conn: object, **row: object) -> bool:
        kept.append(row)
        return True  # the receipt was not used before

    monkeypatch.setattr(handlers, "record_paper_receipt", record)
    uow = FakeUnitOfWork()
    member = member_of(uow, chain(uow)[UnionLevel.GRASSROOTS])
    paid = date(2016, 7, 1)
    command = EnrollmentIn.model_validate(
        {
            "plan_code": "accident_injury",
            "shares": 1,
            "starts_on": "2016-07-01",
            "paper": {"receipt_reference": " JG-2016-000417 ", "paid_on": "2016-07-01"},
        }
    )
    enrollment = await handlers.enroll(uow, command, CLOCK, member_id=member.id, recorded_by="supervisor-1")
    assert views.enrollment_created(enrollment)["recorded_late"] is True
    assert views.enrollment_created(enrollment)["paid_on"] == "2016-07-01"
    event = uow.events(member.id)[-1]
    assert isinstance(event, PlanEnrolled)
    assert (event.recorded_late, event.paid_on, event.recorded_on) == (True, paid, TODAY)
    assert "JG-2016-000417" not in event.model_dump_json()
    assert kept == [
        {
            "enrollment_id": enrollment.enrollment_id,
            "member_id": member.id,
            "receipt_reference": "JG-2016-000417",
            "receipt_key": "JG2016000417",
            "paid_on": paid,
            "recorded_on": TODAY,
            "recorded_by": "supervisor-1",
        }
    ]
    # Nobody to vouch for the receipt: refused before anything is decided.
    with pytest.raises(ValueError):
        await handlers.enroll(uow, command, CLOCK, member_id=member.id)


async def test_an_ordinary_enrolment_from_before_the_clocks_today_is_refused() -> None:
    uow = FakeUnitOfWork()
    member = member_of(uow, chain(uow)[UnionLevel.GRASSROOTS])
    command = EnrollmentIn(plan_code="accident_injury", shares=1, starts_on=date(2016, 8, 9))
    with pytest.raises(InvalidInput) as err:
        await handlers.enroll(uow, command, CLOCK, member_id=member.id)
    assert (err.value.field, err.value.code) == ("starts_on", "start_before_recording_day")
    assert not any(isinstance(e, PlanEnrolled) for e in uow.events(member.id))


async def test_enrolment_needs_a_card() -> None:
    uow = FakeUnitOfWork()
    member = member_of(uow, chain(uow)[UnionLevel.GRASSROOTS], card=False)
    command = EnrollmentIn(plan_code="accident_injury", shares=1, starts_on=TODAY)
    with pytest.raises(Conflict) as err:
        await handlers.enroll(uow, command, CLOCK, member_id=member.id)
    assert err.value.code == "card_required"
