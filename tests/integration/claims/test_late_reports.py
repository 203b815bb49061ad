"""Late reports on the real broker: a report made more than the plan's reporting limit (two
years by default) after the injury is decided NoCoverageFound with ``reporting_limit_passed``."""

from __future__ import annotations

import json
import uuid
from datetime import date

import pytest

from shared.contracts import membership as m
from shared.envelope import EventEnvelope
from tests.integration.claims.conftest import ClaimsUnderTest
from tests.integration.claims.test_injury_reaction import settled
from tests.kafka_support import read_topic

pytestmark = pytest.mark.integration

AUG_2 = date(2016, 8, 2)
YEAR = (date(2016, 1, 1), date(2016, 12, 31))


def reported(c: ClaimsUnderTest, member: uuid.UUID, reported_on: date) -> EventEnvelope:
    report = uuid.uuid4()
    return c.feed.envelope(
        "InjuryReport",
        report,
        m.InjuryReported(
            report_id=report,
            member_id=member,
            occurred_on=AUG_2,
            work_related=False,
            reported_on=reported_on,
            member_version=c.feed.versions[str(member)],
        ),
    )


async def test_exactly_two_years_later_is_in_time(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, *YEAR))
    report = reported(claims, member, date(2018, 8, 2))
    await f.send(report)
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert sorted(c["plan_code"] for c in opened) == ["accident_injury", "card_non_work_accident"]


async def test_a_day_more_is_accepted_and_decided_no_coverage_for_the_reporting_limit(
    claims: ClaimsUnderTest,
) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, *YEAR))
    report = reported(claims, member, date(2018, 8, 3))
    await f.send(report)
    found = await settled(claims, report.aggregate_id, "no_coverage")
    assert found["claims"] == []
    [msg] = await read_topic(claims.settings.kafka_bootstrap_servers, claims.claims_topic, expect=1)
    event = json.loads(msg.value)
    assert event["event_type"] == "NoCoverageFound" and event["data"]["report_id"] == report.aggregate_id
    assert [r.split(":")[0] for r in event["data"]["reasons"]] == [
        "reporting_limit_passed",
        "reporting_limit_passed",
    ]
    assert event["data"]["reasons"][0].startswith("reporting_limit_passed: accident_injury")


async def test_an_enrolment_recorded_after_the_report_is_no_coverage_enrolled_after_report(
    claims: ClaimsUnderTest,
) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member))
    late = f.envelope(
        "Member",
        member,
        m.PlanEnrolled(
            enrollment_id=uuid.uuid4(),
            member_id=member,
            plan_code="accident_injury",
            shares=1,
            coverage_starts_on=YEAR[0],
            coverage_ends_on=YEAR[1],
            recorded_on=date(2016, 8, 5),
        ),
    )
    # The report counts the enrolment in its member_version, so claims waits until it knows it
    # and refuses it for its recording day (built before it, the report raced the enrolment and
    # was sometimes decided no_enrollment instead). It still does not cover it.
    report = reported(claims, member, date(2016, 8, 4))
    await f.send(late, report)
    found = await settled(claims, report.aggregate_id, "no_coverage")
    assert found["claims"] == []
    assert any(r.startswith("enrolled_after_report: accident_injury") for r in found["reasons"])
