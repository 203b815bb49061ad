"""Paper enrolments on the real broker: a supervisor records, on ``recorded_on``, an enrolment
paid earlier (``recorded_late``, cover from ``paid_on``). Claims decides from the events: it
covers an injury on or after its start only when the report was made on or after the day the
enrolment was recorded; a report made before that day is ``enrolled_after_report``, however
early the payment was."""

from __future__ import annotations

import uuid
from datetime import date

import pytest
import sqlalchemy as sa

from services.claims import tables as t
from shared.contracts import membership as m
from shared.envelope import EventEnvelope
from tests.integration.claims.conftest import ClaimsUnderTest
from tests.integration.claims.test_injury_reaction import settled
from tests.integration.claims.test_late_reports import reported
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration

PAID_ON = date(2016, 7, 1)  # before the injury of AUG_2


def paper_enrolment(c: ClaimsUnderTest, member: uuid.UUID, recorded_on: date) -> EventEnvelope:
    return c.feed.envelope(
        "Member",
        member,
        m.PlanEnrolled(
            enrollment_id=uuid.uuid4(),
            member_id=member,
            plan_code="accident_injury",
            shares=1,
            coverage_starts_on=PAID_ON,
            coverage_ends_on=date(2017, 6, 30),
            recorded_on=recorded_on,
            recorded_late=True,
            paid_on=PAID_ON,
        ),
    )


async def test_paid_before_the_injury_but_recorded_after_the_report_does_not_cover_it(
    claims: ClaimsUnderTest,
) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member))
    # Recorded the day after the report was made. The report's member_version counts it, so
    # claims waits until it knows the enrolment: it is refused for its dates, not for being unseen.
    paper = paper_enrolment(claims, member, date(2016, 8, 5))
    report = reported(claims, member, date(2016, 8, 4))
    await f.send(paper, report)
    found = await settled(claims, report.aggregate_id, "no_coverage")
    assert found["claims"] == []
    assert any(r.startswith("enrolled_after_report: accident_injury") for r in found["reasons"]), found


async def test_recorded_on_the_day_of_the_report_covers_an_injury_after_the_payment(
    claims: ClaimsUnderTest,
) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member))
    # The boundary: recorded on 2016-08-03, the report made that same day, the injury (AUG_2)
    # after the payment day, so before the recording day but within the paper enrolment's cover.
    paper = paper_enrolment(claims, member, date(2016, 8, 3))
    report = reported(claims, member, date(2016, 8, 3))
    await f.send(paper, report)
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert [(c["plan_code"], c["benefit"]) for c in opened] == [("accident_injury", "paid")]


# --- the same day: the member-stream version tells "after the report" from "before it" -------


async def _applied(c: ClaimsUnderTest, enrollment: EventEnvelope) -> bool:
    async with c.runtime.engine.connect() as conn:
        found = await conn.scalar(
            sa.select(t.coverage_enrollments.c.recorded_version).where(
                t.coverage_enrollments.c.enrollment_id == uuid.UUID(str(enrollment.data["enrollment_id"]))
            )
        )
    return found is not None


async def test_recorded_the_same_day_but_after_the_report_never_covers_it_whatever_arrives_first(
    claims: ClaimsUnderTest,
) -> None:
    """The race the review found: by dates alone a same-day enrolment covered the report when
    claims happened to apply it before deciding, and did not when it came later."""
    f = claims.feed
    seen_first, seen_later = uuid.uuid4(), uuid.uuid4()
    await f.send(f.joined(seen_first), f.joined(seen_later))
    # Both reports are made (member_version 1) before the enrolment is recorded, all on 2016-08-04.
    report_a = reported(claims, seen_first, date(2016, 8, 4))
    report_b = reported(claims, seen_later, date(2016, 8, 4))
    same_day_a = paper_enrolment(claims, seen_first, date(2016, 8, 4))
    same_day_b = paper_enrolment(claims, seen_later, date(2016, 8, 4))

    # a) claims has applied the enrolment before the report reaches it
    await f.send(same_day_a)
    await eventually(lambda: _applied(claims, same_day_a), timeout=30)
    await f.send(report_a)
    found_a = await settled(claims, report_a.aggregate_id, "no_coverage")
    assert found_a["claims"] == []
    assert any(r.startswith("enrolled_after_report: accident_injury") for r in found_a["reasons"]), found_a

    # b) the report is decided before the enrolment arrives
    await f.send(report_b)
    found_b = await settled(claims, report_b.aggregate_id, "no_coverage")
    await f.send(same_day_b)
    await eventually(lambda: _applied(claims, same_day_b), timeout=30)
    assert found_b["claims"] == []
    assert any(r.startswith("no_enrollment: no accident_injury") for r in found_b["reasons"]), found_b


async def test_recorded_the_same_day_before_the_report_covers_it_even_when_it_arrives_later(
    claims: ClaimsUnderTest,
) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member))
    paper = paper_enrolment(claims, member, date(2016, 8, 4))
    report = reported(claims, member, date(2016, 8, 4))  # counts the enrolment: member_version 2
    await f.send(report)  # first: claims must wait for version 2, not decide without it
    await f.send(paper)
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert [(c["plan_code"], c["benefit"]) for c in opened] == [("accident_injury", "paid")]
