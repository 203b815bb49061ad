"""The plan catalogue through HTTP: data, edited through the API. On the real PostgreSQL and Kafka."""

from __future__ import annotations

import pytest

from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    BY_SUPERVISOR,
    INTEGRATOR,
    STAFF,
    assert_nothing_personal_left,
    assert_problem,
    create,
    envelopes,
    new_member,
    on_paper,
    post,
    published,
)

pytestmark = pytest.mark.integration


# --- plan catalogue ---------------------------------------------------------------------------


async def test_plan_catalogue_is_data_edited_through_the_api(service: Service, tree: dict[str, str]) -> None:
    plans = (await service.client.get("/v1/plans", headers=INTEGRATOR)).json()["items"]
    assert [p["code"] for p in plans] == [
        "accident_injury",
        "female_special_disease",
        "critical_illness",
        "hospitalization_allowance",
        "hospital_medical",
        "child_accident",
        "card_non_work_accident",
    ]
    new_plan = {
        "code": "charity_medical",
        "name": "慈善医疗互助",
        "benefit": "paid",
        "claim_kind": "illness",
        "price_levels": ["30"],
        "term_months": 6,
        "min_age": 18,
        "max_age": 55,
    }
    assert_problem(
        await service.client.put("/v1/plans/charity_medical", json=new_plan, headers=INTEGRATOR), 403
    )
    assert_problem(
        await service.client.put("/v1/plans/other_code", json=new_plan, headers=STAFF), 422, "code"
    )
    bad = {**new_plan, "min_age": 60}
    assert_problem(
        await service.client.put("/v1/plans/charity_medical", json=bad, headers=STAFF), 422, "max_age"
    )
    assert_problem(
        await service.client.put(
            "/v1/plans/charity_medical", json={**new_plan, "term_months": 0}, headers=STAFF
        ),
        422,
        "term_months",
    )
    r = await service.client.put("/v1/plans/charity_medical", json=new_plan, headers=STAFF)
    assert r.status_code == 200 and r.json()["changed"] is True
    same = await service.client.put("/v1/plans/charity_medical", json=new_plan, headers=STAFF)
    assert same.json()["changed"] is False
    assert (await service.client.get("/v1/plans/charity_medical", headers=STAFF)).json()["term_months"] == 6

    m = await new_member(service, tree["grassroots"], card=True)
    enrolled = await create(
        service,
        f"/v1/members/{m['member_id']}/enrollments",
        on_paper({"plan_code": "charity_medical", "shares": 1, "starts_on": "2016-03-01"}),
        **BY_SUPERVISOR,
    )
    assert enrolled["ends_on"] == "2016-08-31"  # the plan's six-month term, from the table

    closed = await service.client.put(
        "/v1/plans/charity_medical", json={**new_plan, "active": False}, headers=STAFF
    )
    assert closed.json()["changed"] is True
    m2 = await new_member(service, tree["grassroots"], card=True)
    late = await post(
        service,
        f"/v1/members/{m2['member_id']}/enrollments",
        {"plan_code": "charity_medical", "shares": 1, "starts_on": "2016-03-01"},
    )
    assert_problem(late, 422, "plan_code")

    defined = envelopes(await published(service), "charity_medical")
    assert [(e["event_type"], e["aggregate_type"], e["data"]["active"]) for e in defined] == [
        ("PlanDefined", "Plan", True),
        ("PlanDefined", "Plan", False),
    ]


# --- last: nothing personal ever left the service ---------------------------------------------


async def test_no_personal_data_on_kafka_in_events_or_logs(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])
