"""A report is decided only on complete knowledge, and decided once, whatever the delivery order."""

from __future__ import annotations

import uuid
from datetime import date

import pytest

from shared.contracts import membership as m
from shared.contracts.plans import DEFAULT_PLANS
from tests.integration.claims.conftest import ClaimsUnderTest, running_claims
from tests.integration.claims.test_injury_reaction import AUG_2, YEAR, claims_of, settled
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration


def plan_defined(code: str) -> m.PlanDefined:
    """A new paid injury plan, shaped like the default accident plan."""
    base = next(p for p in DEFAULT_PLANS if p.code == "accident_injury")
    return m.PlanDefined.model_validate({**base.model_dump(mode="json"), "code": code, "name": code})


async def test_a_plan_defined_after_the_report_still_opens_its_claim(claims: ClaimsUnderTest) -> None:
    """Review defect 1: MemberJoined, CardIssued, PlanEnrolled(accident_plus), a work-related
    report, and only then PlanDefined(accident_plus). The report names the catalogue version it
    was made at, so it waits for the plan instead of deciding "no_enrollment"."""
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, *YEAR, plan="accident_plus"))
    report_id = uuid.uuid4()
    report = f.envelope(
        "InjuryReport",
        report_id,
        m.InjuryReported(
            report_id=report_id,
            member_id=member,
            occurred_on=AUG_2,
            work_related=True,
            reported_on=AUG_2,
            member_version=f.versions[str(member)],
            plan_versions={"accident_plus": 1},
        ),
    )
    await f.send(report)
    pending = await settled(claims, str(report_id), "pending_coverage")
    assert pending["claims"] == []

    await f.send(f.envelope("Plan", "accident_plus", plan_defined("accident_plus")))  # type: ignore[arg-type]
    opened = (await settled(claims, str(report_id)))["claims"]
    assert [(c["plan_code"], c["benefit"]) for c in opened] == [("accident_plus", "paid")]
    published = await read_topic(claims.settings.kafka_bootstrap_servers, claims.claims_topic, expect=1)
    types = [r.headers["event_type"] for r in published]
    assert b"NoCoverageFound" not in types


async def test_a_report_replayed_into_a_fresh_inbox_is_not_decided_a_second_time(
    claims: ClaimsUnderTest,
) -> None:
    """Review defect 5: decided "no coverage", then the member's later events give cover on the
    injury date; a replay of the topic into a fresh inbox must not add a ClaimFiled."""
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member))
    report = f.injury(member, AUG_2)
    await f.send(report)
    await settled(claims, report.aggregate_id, "no_coverage")
    await f.send(f.card(member), f.enrolled(member, *YEAR))

    async with running_claims(claims.settings, group_suffix=".replay", inbox_name="coverage-fresh"):
        marker = f.joined(uuid.uuid4())
        await f.send(marker)

        async def replayed() -> bool:
            async with claims.runtime.engine.connect() as conn:
                import sqlalchemy as sa

                n = await conn.scalar(
                    sa.text("SELECT count(*) FROM inbox WHERE consumer = 'coverage-fresh' AND event_id = :e"),
                    {"e": marker.event_id},
                )
            return n == 1

        await eventually(replayed, timeout=60)
    assert await claims_of(claims, report.aggregate_id) == []
    published = await read_topic(claims.settings.kafka_bootstrap_servers, claims.claims_topic, expect=1)
    assert [r.headers["event_type"] for r in published] == [b"NoCoverageFound"]


async def test_a_member_event_that_overtakes_its_predecessor_waits_for_it(claims: ClaimsUnderTest) -> None:
    """Review defect 3 on the claims side: the card (v2) reaches claims before the join (v1); the
    card is applied after the join, and the report made at v2 opens both claims."""
    f, member = claims.feed, uuid.uuid4()
    joined, card = f.joined(member), f.card(member)
    enrolled = f.enrolled(member, *YEAR)
    await f.send(card, enrolled, joined, card)
    report = f.injury(member, date(2016, 8, 2))
    await f.send(report)
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert sorted(c["benefit"] for c in opened) == ["card", "paid"]
