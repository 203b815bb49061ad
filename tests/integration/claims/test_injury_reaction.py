"""The headline: an injury report opens every claim the member is entitled to, exactly once."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from shared.contracts import membership as m
from shared.contracts.common import Gender
from tests.integration.claims.conftest import STAFF, ClaimsUnderTest, running_claims
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration

AUG_2 = date(2016, 8, 2)
YEAR = (date(2016, 1, 1), date(2016, 12, 31))


async def claims_of(c: ClaimsUnderTest, report_id: str) -> list[dict[str, Any]]:
    r = await c.http.get("/v1/claims", params={"report_id": report_id}, headers=STAFF)
    assert r.status_code == 200
    items: list[dict[str, Any]] = r.json()["items"]
    return items


async def decision(c: ClaimsUnderTest, report_id: str, state: str) -> dict[str, Any] | None:
    r = await c.http.get(f"/v1/reports/{report_id}", headers=STAFF)
    if r.status_code == 200 and r.json()["state"] == state:
        body: dict[str, Any] = r.json()
        return body
    return None


async def settled(c: ClaimsUnderTest, report_id: str, state: str = "claims_opened") -> dict[str, Any]:
    result: dict[str, Any] = await eventually(lambda: decision(c, report_id, state), timeout=30)
    return result


async def test_seed_case_opens_exactly_the_paid_and_the_card_claim(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, *YEAR))
    report = f.injury(member, AUG_2)
    await f.send(report)
    rid = report.aggregate_id

    opened = (await settled(claims, rid))["claims"]
    assert sorted((c["plan_code"], c["benefit"]) for c in opened) == [
        ("accident_injury", "paid"),
        ("card_non_work_accident", "card"),
    ]
    for c in opened:
        assert c["status"] == "filed" and c["member_id"] == str(member)
        assert "diagnosis_and_hospital_records" in c["required_documents"]
        assert c["missing_documents"] == c["required_documents"]  # its own, untouched checklist

    on_kafka = await read_topic(
        claims.runtime.settings.kafka_bootstrap_servers, claims.claims_topic, expect=2
    )
    filed = [json.loads(r.value) for r in on_kafka if r.headers["event_type"] == b"ClaimFiled"]
    assert sorted(e["data"]["plan_code"] for e in filed) == ["accident_injury", "card_non_work_accident"]
    for e in filed:
        assert e["causation_id"] == str(report.event_id), "claims are caused by the report"
        assert e["correlation_id"] == str(report.correlation_id)
        assert e["data"]["report_id"] == rid and e["producer"] == "claims"


async def test_work_related_injury_opens_only_the_paid_claim(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, *YEAR))
    report = f.injury(member, AUG_2, work_related=True)
    await f.send(report)
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert [c["plan_code"] for c in opened] == ["accident_injury"]


async def test_card_but_no_enrolment_opens_only_the_card_claim(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member))
    report = f.injury(member, AUG_2)
    await f.send(report)
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert [c["plan_code"] for c in opened] == ["card_non_work_accident"]


@pytest.mark.parametrize(
    "period",
    [(date(2015, 1, 1), date(2015, 12, 31)), (date(2016, 9, 1), date(2017, 8, 31))],
    ids=["expired", "not-yet-started"],
)
async def test_enrolment_not_covering_the_day_and_no_card_finds_no_coverage(
    claims: ClaimsUnderTest, period: tuple[date, date]
) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.enrolled(member, *period))
    report = f.injury(member, AUG_2)
    await f.send(report)
    found = await settled(claims, report.aggregate_id, "no_coverage")
    assert found["claims"] == []
    assert any(r.startswith("not_covered_on_date") for r in found["reasons"])


async def test_neither_card_nor_enrolment_publishes_no_coverage_found_with_reasons(
    claims: ClaimsUnderTest,
) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member))
    report = f.injury(member, AUG_2)
    await f.send(report)
    await settled(claims, report.aggregate_id, "no_coverage")
    [msg] = await read_topic(claims.settings.kafka_bootstrap_servers, claims.claims_topic, expect=1)
    event = json.loads(msg.value)
    assert event["event_type"] == "NoCoverageFound"
    assert event["data"]["report_id"] == report.aggregate_id
    assert [r.split(":")[0] for r in event["data"]["reasons"]] == ["no_enrollment", "no_active_card"]


async def test_report_delivered_three_times_and_topic_replayed_still_two_claims(
    claims: ClaimsUnderTest,
) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, *YEAR))
    report = f.injury(member, AUG_2)
    await f.send(report, report, report)
    await settled(claims, report.aggregate_id)

    # Three more consumers replay the whole topic from offset 0 at the same time, into the same
    # database: one with the same inbox (the inbox dedupes), and two racing each other with inboxes
    # of their own, as if the inbox were lost: only the derived claim ids stand between them and
    # a second pair of claims.
    async with (
        running_claims(claims.settings, group_suffix=".replay-a"),
        running_claims(claims.settings, group_suffix=".replay-b", inbox_name="coverage-b"),
        running_claims(claims.settings, group_suffix=".replay-c", inbox_name="coverage-c"),
    ):
        marker = f.joined(uuid.uuid4())
        await f.send(marker)

        async def all_caught_up() -> bool:
            async with claims.runtime.engine.connect() as conn:
                n = await conn.scalar(
                    sa.text("SELECT count(DISTINCT consumer) FROM inbox WHERE event_id = :e"),
                    {"e": marker.event_id},
                )
            return n == 3  # "coverage" (the service's and replay-a's, one inbox), coverage-b, coverage-c

        await eventually(all_caught_up, timeout=60)
    assert len(await claims_of(claims, report.aggregate_id)) == 2
    filed = [
        r
        for r in await read_topic(claims.settings.kafka_bootstrap_servers, claims.claims_topic, expect=2)
        if r.headers["event_type"] == b"ClaimFiled"
    ]
    assert len(filed) == 2, "each claim filed once on Kafka"


async def test_a_member_event_of_a_type_unknown_to_this_release_still_releases_a_waiting_report(
    claims: ClaimsUnderTest,
) -> None:
    f, member = claims.feed, uuid.uuid4()
    joined, card = f.joined(member), f.card(member)
    newer = f.envelope(
        "Member",
        member,
        m.MemberJoined(  # stands in for a type added upstream later
            member_id=member,
            union_id=uuid.uuid4(),
            full_name="x",
            gender=Gender.MALE,
            birth_date=date(1980, 1, 1),
            joined_on=date(2012, 5, 1),
        ),
    )
    newer = newer.model_copy(
        update={"event_type": "MemberNicknameChanged", "data": {"nickname": "老王"}}  # no member_id in it
    )
    report = f.injury(member, AUG_2)  # made at member version 3
    await f.send(joined, card, report)
    await settled(claims, report.aggregate_id, "pending_coverage")
    await f.send(newer)
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert [c["plan_code"] for c in opened] == ["card_non_work_accident"]


async def test_injury_report_arriving_before_the_enrolment_events_still_opens_both_claims(
    claims: ClaimsUnderTest,
) -> None:
    f, member = claims.feed, uuid.uuid4()
    history = [f.joined(member), f.card(member), f.enrolled(member, *YEAR)]
    report = f.injury(member, AUG_2)  # made when membership had all three
    await f.send(report)  # ... but the claims service hears of it first
    waiting = await settled(claims, report.aggregate_id, "pending_coverage")
    assert waiting["waiting_for_member_version"] == 3

    await f.send(*history[:2])  # joined + card: still one version short
    await asyncio.sleep(1.0)
    assert (await decision(claims, report.aggregate_id, "pending_coverage")) is not None

    await f.send(history[2])
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert sorted(c["plan_code"] for c in opened) == ["accident_injury", "card_non_work_accident"]
    filed = [
        json.loads(r.value)
        for r in await read_topic(claims.settings.kafka_bootstrap_servers, claims.claims_topic, expect=2)
    ]
    # Decided in the transaction of the enrolment event, but traced to the report that caused it.
    assert {(e["causation_id"], e["correlation_id"]) for e in filed} == {
        (str(report.event_id), str(report.correlation_id))
    }
