"""Paper enrolments on the real broker: a supervisor records, on ``recorded_on``, an enrolment
paid earlier (``recorded_late``, cover from ``paid_on``). Claims decides from the events: it
covers an injury on or after its start only when the report was made on or after the day the
enrolment was recorded; a report made before that day is ``enrolled_after_report``, however
early the payment was."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from shared.contracts import membership as m
from shared.envelope import EventEnvelope
from tests.integration.claims.conftest import ClaimsUnderTest
from tests.integration.claims.test_injury_reaction import settled
from tests.integration.claims.test_late_reports import reported

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
