"""Injury reports through HTTP: health data kept private. On the real PostgreSQL and Kafka."""

from __future__ import annotations

import json
import uuid
from datetime import date

import pytest
import sqlalchemy as sa

from services.membership.tables import injury_details
from shared.tables import events as events_table
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    INTEGRATOR,
    SUPERVISOR,
    assert_nothing_personal_left,
    assert_problem,
    envelopes,
    new_id,
    new_member,
    post,
    published,
)

pytestmark = pytest.mark.integration


# --- injury reports ---------------------------------------------------------------------------


async def test_injury_report_keeps_health_data_private(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"], joined_on=date(2014, 5, 1), card=True)
    path = f"/v1/members/{m['member_id']}/injury-reports"
    description = f"右手被机器划伤-{uuid.uuid4().hex[:8]}"
    diagnosis = f"右手掌裂伤缝合-{uuid.uuid4().hex[:8]}"
    hospital = f"顺义区医院-{uuid.uuid4().hex[:8]}"
    service.secrets.extend([description, diagnosis, hospital])
    body = {
        "occurred_on": "2016-08-01",
        "work_related": False,
        "description": description,
        "diagnosis": diagnosis,
        "hospital": hospital,
    }
    assert_problem(await post(service, path, {**body, "occurred_on": "2016-08-11"}), 422, "occurred_on")
    assert_problem(await post(service, path, {**body, "occurred_on": "2014-04-30"}), 422, "occurred_on")
    assert_problem(await post(service, path, {**body, "work_related": "no"}), 422, "work_related")
    assert_problem(
        await post(service, path, {k: v for k, v in body.items() if k != "diagnosis"}), 422, "diagnosis"
    )
    assert_problem(await post(service, f"/v1/members/{new_id()}/injury-reports", body), 404)

    r = await post(service, path, body)
    assert r.status_code == 202, r.text
    report_id = r.json()["report_id"]
    assert r.json()["member_version"] == 2  # joined + card
    assert description not in r.text

    listed = await service.client.get(path, headers=INTEGRATOR)
    assert listed.status_code == 200 and [i["report_id"] for i in listed.json()["items"]] == [report_id]
    assert description not in listed.text and diagnosis not in listed.text
    assert (
        await service.client.get(f"/v1/injury-reports/{report_id}", headers=INTEGRATOR)
    ).status_code == 403
    detail = (await service.client.get(f"/v1/injury-reports/{report_id}", headers=SUPERVISOR)).json()
    assert (detail["description"], detail["diagnosis"], detail["hospital"]) == (
        description,
        diagnosis,
        hospital,
    )
    assert detail["occurred_on"] == "2016-08-01" and detail["work_related"] is False

    async with service.runtime.engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.select(injury_details).where(injury_details.c.report_id == uuid.UUID(report_id))
            )
        ).one()
        event_data = await conn.scalar(
            sa.select(sa.cast(events_table.c.data, sa.Text)).where(events_table.c.stream_id == report_id)
        )
    assert all(text not in " ".join(map(str, stored)) for text in (description, diagnosis, hospital))
    assert event_data is not None and description not in event_data

    [envelope] = envelopes(await published(service), report_id)
    assert envelope["event_type"] == "InjuryReported" and envelope["aggregate_type"] == "InjuryReport"
    assert envelope["data"]["member_id"] == m["member_id"] and envelope["data"]["member_version"] == 2
    assert envelope["data"]["occurred_on"] == "2016-08-01" and envelope["data"]["reported_on"] == "2016-08-10"
    assert envelope["data"]["work_related"] is False
    assert not {"description", "diagnosis", "hospital"} & set(envelope["data"])


# --- last: nothing personal ever left the service ---------------------------------------------


async def test_no_personal_data_on_kafka_in_events_or_logs(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])


async def test_the_same_injury_reported_again_names_its_first_report(
    service: Service, tree: dict[str, str]
) -> None:
    """So that an enrolment recorded between the two reports does not cover it (claims judges
    enrolments against the first report; tests/integration/claims/test_backdating_adversarial17)."""
    m = await new_member(service, tree["grassroots"], joined_on=date(2014, 5, 1), card=True)
    path = f"/v1/members/{m['member_id']}/injury-reports"
    body = {"occurred_on": "2016-08-01", "work_related": False, "description": "d", "diagnosis": "x"}
    first = await post(service, path, body)
    assert first.status_code == 202, first.text
    # a fact in between moves the member's stream on: an enrolment recorded today
    enrol = {"plan_code": "accident_injury", "shares": 1, "starts_on": "2016-08-10"}
    enrolled = await post(service, f"/v1/members/{m['member_id']}/enrollments", enrol)
    assert enrolled.status_code == 201, enrolled.text
    again = await post(service, path, body)
    other_day = await post(service, path, {**body, "occurred_on": "2016-08-02"})
    assert again.status_code == 202 and other_day.status_code == 202
    reported = {
        d["report_id"]: d
        for d in (json.loads(msg.value)["data"] for msg in await published(service))
        if d.get("member_id") == m["member_id"] and "occurred_on" in d
    }
    original = reported[first.json()["report_id"]]
    assert (original["first_reported_on"], original["first_member_version"]) == (None, None)
    repeat = reported[again.json()["report_id"]]
    assert (repeat["first_reported_on"], repeat["first_member_version"]) == (
        "2016-08-10",
        first.json()["member_version"],
    )
    assert repeat["member_version"] > first.json()["member_version"]
    assert reported[other_day.json()["report_id"]]["first_reported_on"] is None


async def test_a_station_bound_token_reads_injury_details_of_its_own_unions_members_only(
    service: Service, tree: dict[str, str]
) -> None:
    """Found by the issue-17 review: a staff token bound to a union read the health details of
    any union's members. Now: the union or one below it; a refusal is audited like any other."""
    from services.membership import views
    from shared.auth import Principal, Role
    from shared.http import ProblemError

    m = await new_member(service, tree["grassroots"], joined_on=date(2014, 5, 1), card=True)
    body = {"occurred_on": "2016-08-01", "work_related": False, "description": "d", "diagnosis": "x"}
    report = (await post(service, f"/v1/members/{m['member_id']}/injury-reports", body)).json()["report_id"]
    sibling = {"name": "另一街道总工会", "level": "street", "parent_id": tree["district"]}
    created = await post(service, "/v1/unions", sibling)
    assert created.status_code == 201, created.text
    other = created.json()["union_id"]
    state = service.app.state

    async def read(union_id: str) -> dict[str, object]:
        who = Principal(subject=f"clerk-{union_id[:8]}", role=Role.STAFF, union_id=union_id)
        return await views.injury_report_detail(
            state.runtime.engine, state.audit, state.vault, who, uuid.UUID(report)
        )

    assert (await read(tree["street"]))["diagnosis"] == "x"  # the member's union is below it
    assert (await read(tree["grassroots"]))["diagnosis"] == "x"
    with pytest.raises(ProblemError) as refused:
        await read(other)
    assert (refused.value.status, refused.value.code) == (403, "other_union")
    trail = (await service.client.get(f"/v1/audit?report_id={report}", headers=SUPERVISOR)).json()["items"]
    assert [(e["allowed"], e["reason"]) for e in trail][-1] == (
        False,
        "the member is not in the caller's union",
    )
