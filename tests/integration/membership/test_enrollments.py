"""Mutual-aid enrolments through HTTP, and the enrolment statistics. On the real PostgreSQL and Kafka."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import pytest

from tests.integration.membership.conftest import TODAY, Service
from tests.integration.membership.support import (
    BY_SUPERVISOR,
    INTEGRATOR,
    STAFF,
    SUPERVISOR,
    assert_nothing_personal_left,
    assert_problem,
    card_number,
    create,
    envelopes,
    new_id,
    new_member,
    on_paper,
    post,
    problem_fields,
    published,
    union_tree,
)

pytestmark = pytest.mark.integration


# --- enrolments -------------------------------------------------------------------------------


async def test_enrolment_rules(service: Service, tree: dict[str, str]) -> None:
    man = await new_member(service, tree["grassroots"])
    path = f"/v1/members/{man['member_id']}/enrollments"
    accident = {"plan_code": "accident_injury", "shares": 2, "starts_on": "2016-01-01"}

    async def paper_post(path: str, body: dict[str, Any]) -> Any:
        """These rules are about terms, ages and overlaps in early 2016, before the service's
        today: such cover can only be recorded from paper, by a supervisor."""
        past = isinstance(body.get("starts_on"), str) and body["starts_on"] < TODAY.isoformat()
        return await post(service, path, on_paper(body) if past else body, SUPERVISOR)

    assert_problem(await paper_post(path, accident), 409)  # no Jing card yet
    await create(service, f"/v1/members/{man['member_id']}/card", {"card_number": card_number()})

    assert_problem(await paper_post(path, {**accident, "plan_code": "no_such_plan"}), 422, "plan_code")
    assert_problem(await paper_post(path, {**accident, "shares": 0}), 422, "shares")
    assert_problem(await paper_post(path, {**accident, "shares": "2"}), 422, "shares")
    assert_problem(await paper_post(path, {**accident, "starts_on": 20160101}), 422, "starts_on")
    assert_problem(await paper_post(path, {**accident, "price_level": "30"}), 422, "price_level")
    female_plan = {**accident, "plan_code": "female_special_disease"}
    problem = assert_problem(await paper_post(path, female_plan), 422)
    assert problem_fields(problem) & {"plan_code", "gender"}
    assert_problem(
        await paper_post(path, {**accident, "plan_code": "card_non_work_accident"}), 422, "plan_code"
    )
    assert_problem(await paper_post(f"/v1/members/{new_id()}/enrollments", accident), 404)

    r = await paper_post(path, {**accident, "price_level": "50"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["ends_on"] == "2016-12-31" and uuid.UUID(first["enrollment_id"])
    assert_problem(await paper_post(path, {**accident, "starts_on": "2016-06-01"}), 409)  # overlaps
    nxt = await paper_post(path, {**accident, "starts_on": "2017-01-01"})
    assert nxt.status_code == 201 and nxt.json()["ends_on"] == "2017-12-31"

    cancel = f"{path}/{first['enrollment_id']}/cancel"
    assert (await paper_post(cancel, {"reason": "entered twice"})).status_code == 200
    assert_problem(await paper_post(cancel, {}), 409)
    assert_problem(await paper_post(f"{path}/{new_id()}/cancel", {}), 404)
    again = await paper_post(path, {**accident, "starts_on": "2016-03-01", "ends_on": "2016-12-31"})
    assert again.status_code == 201, again.text

    detail = (await service.client.get(f"/v1/members/{man['member_id']}", headers=STAFF)).json()
    assert [(e["starts_on"], e["ends_on"], e["status"], e["shares"]) for e in detail["enrollments"]] == [
        ("2016-01-01", "2016-12-31", "cancelled", 2),
        ("2016-03-01", "2016-12-31", "active", 2),
        ("2017-01-01", "2017-12-31", "active", 2),
    ]
    assert detail["enrollments"][0]["price_level"] == "50.00"

    # too old for the accident plan (16-60 on the day coverage starts), and retired members
    elder = await new_member(service, tree["grassroots"], birth_date=date(1955, 1, 1), card=True)
    old_path = f"/v1/members/{elder['member_id']}/enrollments"
    assert_problem(await paper_post(old_path, accident), 422, "plan_code")  # 61 on 2016-01-01
    ok = await paper_post(old_path, {**accident, "starts_on": "2015-02-28", "ends_on": "2015-12-31"})
    assert ok.status_code == 201, ok.text  # 60 then: still inside 16-60
    await create(
        service, f"/v1/members/{elder['member_id']}/leave", {"reason": "retired", "left_on": "2016-03-01"}
    )
    critical = {"plan_code": "critical_illness", "shares": 2, "starts_on": "2016-04-01"}
    assert assert_problem(await paper_post(old_path, critical), 409)["code"] == "member_retired"

    woman = await new_member(service, tree["grassroots"], gender="female", full_name="张丽", card=True)
    r = await paper_post(f"/v1/members/{woman['member_id']}/enrollments", female_plan)
    assert r.status_code == 201 and r.json()["ends_on"] == "2016-12-31"


# --- statistics -------------------------------------------------------------------------------


async def test_enrolment_statistics_per_year(service: Service) -> None:
    tree = await union_tree(service, label="-统计")
    women = [await new_member(service, tree["grassroots"], gender="female", card=True) for _ in range(3)]
    man = await new_member(service, tree["grassroots2"], card=True)
    for w in women:
        await create(
            service,
            f"/v1/members/{w['member_id']}/enrollments",
            on_paper({"plan_code": "female_special_disease", "shares": 6, "starts_on": "2015-01-01"}),
            **BY_SUPERVISOR,
        )
        await create(
            service,
            f"/v1/members/{w['member_id']}/enrollments",
            on_paper({"plan_code": "female_special_disease", "shares": 5, "starts_on": "2016-01-01"}),
            **BY_SUPERVISOR,
        )
    await create(
        service,
        f"/v1/members/{man['member_id']}/enrollments",
        on_paper({"plan_code": "accident_injury", "shares": 4, "starts_on": "2016-01-01"}),
        **BY_SUPERVISOR,
    )
    dropped = await create(
        service,
        f"/v1/members/{man['member_id']}/enrollments",
        on_paper({"plan_code": "critical_illness", "shares": 2, "starts_on": "2016-02-01"}),
        **BY_SUPERVISOR,
    )
    await create(service, f"/v1/members/{man['member_id']}/enrollments/{dropped['enrollment_id']}/cancel", {})

    async def stats(year: int, union: str) -> dict[str, Any]:
        r = await service.client.get(
            f"/v1/statistics/enrollments?year={year}&union_id={union}", headers=INTEGRATOR
        )
        assert r.status_code == 200, r.text
        body: dict[str, Any] = r.json()
        return body

    y2015 = await stats(2015, tree["street"])
    assert (y2015["total_shares"], y2015["total_enrollments"], y2015["plans_with_enrollments"]) == (18, 3, 1)
    y2016 = await stats(2016, tree["street"])
    by_plan = {p["plan_code"]: (p["enrollments"], p["shares"]) for p in y2016["plans"]}
    assert by_plan["female_special_disease"] == (3, 15) and by_plan["accident_injury"] == (1, 4)
    assert by_plan["critical_illness"] == (0, 0)  # cancelled enrolments do not count
    assert (y2016["total_shares"], y2016["members_enrolled"], y2016["plans_with_enrollments"]) == (19, 4, 2)
    only_one_union = await stats(2016, tree["grassroots2"])
    assert only_one_union["total_shares"] == 4
    assert_problem(
        await service.client.get("/v1/statistics/enrollments?year=16x", headers=STAFF), 422, "year"
    )
    assert_problem(await service.client.get("/v1/statistics/enrollments", headers=STAFF), 422, "year")


# --- last: nothing personal ever left the service ---------------------------------------------


async def test_no_personal_data_on_kafka_in_events_or_logs(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])


# --- no backdating ----------------------------------------------------------------------------


async def test_cover_starts_no_earlier_than_the_recording_day_unless_a_supervisor_records_paper(
    service: Service, tree: dict[str, str]
) -> None:
    man = await new_member(service, tree["grassroots"], card=True)
    path = f"/v1/members/{man['member_id']}/enrollments"
    accident = {"plan_code": "accident_injury", "shares": 1}
    # The service's today is 2016-08-10: the day before is refused, the day itself is fine.
    refused = assert_problem(
        await post(service, path, {**accident, "starts_on": "2016-08-09"}), 422, "starts_on"
    )
    assert refused["code"] == "start_before_recording_day"
    ok = await post(service, path, {**accident, "starts_on": "2016-08-10"})
    assert ok.status_code == 201 and ok.json()["recorded_late"] is False, ok.text

    other = await new_member(service, tree["grassroots"], card=True)
    path = f"/v1/members/{other['member_id']}/enrollments"
    paper = {
        **accident,
        "starts_on": "2016-05-04",
        "paper": {"receipt_reference": "JG-2016-000417", "paid_on": "2016-05-04"},
    }
    denied = await post(service, path, paper)  # staff
    assert denied.status_code == 403 and denied.json()["code"] == "supervisor_required", denied.text
    early = {**paper, "starts_on": "2016-05-03"}
    assert assert_problem(await post(service, path, early, SUPERVISOR), 422, "starts_on")["code"] == (
        "start_before_payment"
    )
    future = {
        **paper,
        "starts_on": "2016-08-11",
        "paper": {"receipt_reference": "X1", "paid_on": "2016-08-11"},
    }
    assert_problem(await post(service, path, future, SUPERVISOR), 422, "paper.paid_on")
    recorded = await post(service, path, paper, SUPERVISOR)
    assert recorded.status_code == 201, recorded.text
    assert (recorded.json()["recorded_late"], recorded.json()["paid_on"]) == (True, "2016-05-04")

    listed = (await service.client.get(path, headers=STAFF)).json()["items"]
    assert [(e["starts_on"], e["recorded_late"], e["paid_on"], e["receipt_reference"]) for e in listed] == [
        ("2016-05-04", True, "2016-05-04", "JG-2016-000417")
    ]
    integrator = (await service.client.get(path, headers=INTEGRATOR)).json()["items"]
    assert "receipt_reference" not in integrator[0] and integrator[0]["recorded_late"] is True

    [event] = [
        e
        for e in envelopes(await published(service), str(other["member_id"]))
        if e["event_type"] == "PlanEnrolled"
    ]
    assert (event["data"]["recorded_late"], event["data"]["paid_on"], event["data"]["recorded_on"]) == (
        True,
        "2016-05-04",
        "2016-08-10",
    )
    assert "JG-2016-000417" not in json.dumps(event)


async def test_one_receipt_pays_for_one_enrolment_and_paid_today_is_not_late(
    service: Service, tree: dict[str, str]
) -> None:
    first = await new_member(service, tree["grassroots"], card=True)
    second = await new_member(service, tree["grassroots"], card=True)
    receipt = f"JG-{uuid.uuid4().hex[:10]}"
    body = {
        "plan_code": "accident_injury",
        "shares": 1,
        "starts_on": "2016-06-01",
        "paper": {"receipt_reference": receipt, "paid_on": "2016-06-01"},
    }
    ok = await post(service, f"/v1/members/{first['member_id']}/enrollments", body, SUPERVISOR)
    assert ok.status_code == 201, ok.text
    reused = assert_problem(
        await post(service, f"/v1/members/{second['member_id']}/enrollments", body, SUPERVISOR),
        409,
        "paper.receipt_reference",
    )
    assert reused["code"] == "receipt_already_used"
    retyped = {**body, "paper": {**body["paper"], "receipt_reference": f" {receipt.lower()} "}}
    again = await post(service, f"/v1/members/{second['member_id']}/enrollments", retyped, SUPERVISOR)
    assert assert_problem(again, 409, "paper.receipt_reference")["code"] == "receipt_already_used"
    # nothing half-written: the refused enrolment is neither listed nor published
    path = f"/v1/members/{second['member_id']}/enrollments"
    assert (await service.client.get(path, headers=STAFF)).json()["items"] == []
    events = envelopes(await published(service), str(second["member_id"]))
    assert [e for e in events if e["event_type"] == "PlanEnrolled"] == []

    # paid at the counter and recorded the same day (the service's today, 2016-08-10): not late
    same_day = {
        "plan_code": "accident_injury",
        "shares": 1,
        "starts_on": "2016-08-10",
        "paper": {"receipt_reference": f"JG-{uuid.uuid4().hex[:10]}", "paid_on": "2016-08-10"},
    }
    today = await post(service, path, same_day, SUPERVISOR)
    assert today.status_code == 201 and today.json()["recorded_late"] is False, today.text
    listed = (await service.client.get(path, headers=STAFF)).json()["items"]
    assert [(e["paid_on"], e["recorded_late"]) for e in listed] == [("2016-08-10", False)]
