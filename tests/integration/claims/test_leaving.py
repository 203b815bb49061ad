"""Leaving, on the real broker: the Jing-card benefit ends on the day of leaving (the day after
opens no card claim); paid enrolments stay in force to their end date; the entitlements view says
so for a date."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest

from shared.contracts import membership as m
from tests.integration.claims.conftest import STAFF, ClaimsUnderTest
from tests.integration.claims.test_injury_reaction import settled
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration

LEFT_ON = date(2016, 8, 2)
YEAR = (date(2016, 1, 1), date(2016, 12, 31))


def left(c: ClaimsUnderTest, member: uuid.UUID) -> Any:
    return c.feed.envelope(
        "Member", member, m.MemberLeft(member_id=member, left_on=LEFT_ON, reason=m.LeaveReason.MOVED)
    )


async def test_an_injury_on_the_day_of_leaving_still_opens_the_card_claim(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), left(claims, member))
    report = f.injury(member, LEFT_ON)
    await f.send(report)
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert [c["plan_code"] for c in opened] == ["card_non_work_accident"]


async def test_an_injury_the_day_after_leaving_opens_no_card_claim(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), left(claims, member))
    report = f.injury(member, date(2016, 8, 3))
    await f.send(report)
    found = await settled(claims, report.aggregate_id, "no_coverage")
    assert found["claims"] == []
    assert any(r.startswith("member_left: the Jing card benefit ended") for r in found["reasons"])


async def test_a_paid_enrolment_stays_in_force_after_leaving(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, *YEAR), left(claims, member))
    report = f.injury(member, date(2016, 8, 3))
    await f.send(report)
    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert [(c["plan_code"], c["benefit"]) for c in opened] == [("accident_injury", "paid")]


async def test_the_entitlements_view_says_so_for_a_date(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, *YEAR), left(claims, member))

    async def on(day: str) -> dict[str, Any]:
        r = await claims.http.get(f"/v1/members/{member}/entitlements", params={"on": day}, headers=STAFF)
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    async def leaving_known() -> dict[str, Any] | None:
        body = await on("2016-08-03")
        return body if any(r.startswith("member_left") for r in body["reasons"]) else None

    after = await eventually(leaving_known, timeout=30)  # the member's last event is consumed
    assert [e["plan_code"] for e in after["entitlements"]] == ["accident_injury"]
    same_day = await on("2016-08-02")
    assert sorted(e["plan_code"] for e in same_day["entitlements"]) == [
        "accident_injury",
        "card_non_work_accident",
    ]
    end = await on("2017-01-01")
    assert end["entitlements"] == []
    assert [r.split(":")[0] for r in end["reasons"]] == ["not_covered_on_date", "member_left"]
