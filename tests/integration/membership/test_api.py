"""The membership service through HTTP, on the real PostgreSQL and the real Kafka broker."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.membership.projections import rebuild_read_models
from services.membership.tables import card_numbers, injury_details, member_identities
from services.membership.tables import metadata as membership_metadata
from shared.contracts import claims as claims_contract
from shared.envelope import HEADER_NAMES, EventEnvelope, utcnow
from shared.events import DomainEvent
from shared.tables import consumer_metadata, core_metadata
from shared.tables import events as events_table
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    INTEGRATOR,
    STAFF,
    SUPERVISOR,
    card_number,
    create,
    envelopes,
    national_id,
    new_id,
    new_member,
    problem_fields,
    published,
    stored_event_count,
    union_tree,
)
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration

ENVELOPE_FIELDS = {
    "event_id",
    "event_type",
    "schema_version",
    "aggregate_type",
    "aggregate_id",
    "aggregate_version",
    "occurred_at",
    "producer",
    "correlation_id",
    "causation_id",
    "data",
}


@pytest.fixture(scope="module")
async def tree(service: Service) -> dict[str, str]:
    return await union_tree(service)


async def post(service: Service, path: str, body: Any, headers: dict[str, str] | None = None) -> Any:
    return await service.client.post(path, json=body, headers=headers if headers is not None else STAFF)


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if field is not None:
        assert field in problem_fields(body), body
    return body


# --- unions -----------------------------------------------------------------------------------


async def test_union_tree_is_checked_and_readable(service: Service, tree: dict[str, str]) -> None:
    r = await service.client.get(f"/v1/unions/{tree['street']}", headers=INTEGRATOR)
    assert r.status_code == 200
    street = r.json()
    assert street["level"] == "street" and street["parent_id"] == tree["district"]
    assert {c["union_id"] for c in street["children"]} == {tree["grassroots"], tree["grassroots2"]}

    unknown = await post(service, "/v1/unions", {"name": "x", "level": "district", "parent_id": new_id()})
    assert_problem(unknown, 422, "parent_id")
    skipping = await post(
        service, "/v1/unions", {"name": "x", "level": "grassroots", "parent_id": tree["district"]}
    )
    assert_problem(skipping, 422, "parent_id")
    orphan = await post(service, "/v1/unions", {"name": "x", "level": "street"})
    assert_problem(orphan, 422, "parent_id")
    assert_problem(await post(service, "/v1/unions", {"name": "x", "level": "village"}), 422, "level")
    assert_problem(await post(service, "/v1/unions", {"name": " ", "level": "municipal"}), 422, "name")
    assert_problem(
        await post(service, "/v1/unions", {"name": "x", "level": "district", "parent_id": "42"}), 422
    )
    assert_problem(await service.client.get(f"/v1/unions/{new_id()}", headers=STAFF), 404)

    listed = (await service.client.get("/v1/unions?level=grassroots", headers=STAFF)).json()["items"]
    assert {tree["grassroots"], tree["grassroots2"]} <= {u["union_id"] for u in listed}
    assert all(u["level"] == "grassroots" for u in listed)


# --- members ----------------------------------------------------------------------------------


async def test_member_answer_masks_personal_data(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"], card=True)
    r = await service.client.get(f"/v1/members/{m['member_id']}", headers=INTEGRATOR)
    assert r.status_code == 200
    got = r.json()
    assert got["national_id"] == "*" * 14 + m["national_id"][-4:]
    assert got["phone"] == "*" * 7 + m["phone"][-4:]
    assert got["card"] == {"card_last4": m["card_number"][-4:], "issued_on": "2010-03-01", "status": "active"}
    assert got["enrollments"] == [] and got["status"] == "active"
    assert got["union_id"] == tree["grassroots"] and got["birth_date"] == "1980-05-20"
    for secret in (m["national_id"], m["phone"], m["card_number"], m["national_id"][:-4]):
        assert secret not in r.text

    async with service.runtime.engine.connect() as conn:
        raw = (
            await conn.execute(
                sa.select(member_identities, card_numbers)
                .join(card_numbers, card_numbers.c.member_id == member_identities.c.member_id)
                .where(member_identities.c.member_id == uuid.UUID(m["member_id"]))
            )
        ).one()
    stored = " ".join(str(v) for v in raw)
    for secret in (m["national_id"], m["phone"], m["card_number"]):
        assert secret not in stored  # encrypted at rest, indexed by a keyed hash

    joined_today = await create(
        service,
        "/v1/members",
        {
            "union_id": tree["grassroots"],
            "full_name": "赵六",
            "gender": "female",
            "birth_date": "1990-01-01",
            "national_id": (nid := national_id(date(1990, 1, 1), female=True)),
        },
    )
    service.secrets.append(nid)
    detail = (await service.client.get(f"/v1/members/{joined_today['member_id']}", headers=STAFF)).json()
    assert detail["joined_on"] == "2016-08-10" and detail["phone"] is None and detail["card"] is None


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"national_id": "11011319800520123"}, "national_id"),  # 17 characters
        ({"national_id": "1101131980052012345"}, "national_id"),  # 19
        ({"national_id": "11011319800520A234"}, "national_id"),
        ({"national_id": None}, "national_id"),
        ({"gender": "unknown"}, "gender"),
        ({"birth_date": "1980-13-01"}, "birth_date"),
        ({"birth_date": "20/05/1980"}, "birth_date"),
        ({"birth_date": "2010-01-01"}, "birth_date"),  # under 16 when joining
        ({"joined_on": "2016-08-11"}, "joined_on"),  # tomorrow
        ({"full_name": ""}, "full_name"),
        ({"union_id": "not-a-uuid"}, "union_id"),
        ({"union_id": None}, "union_id"),
        ({"phone": "call me"}, "phone"),
        ({"union_id": "STREET"}, "union_id"),  # not a grassroots union
        ({"union_id": "UNKNOWN"}, "union_id"),
    ],
)
async def test_member_validation_names_the_field(
    service: Service, tree: dict[str, str], change: dict[str, Any], field: str
) -> None:
    body: dict[str, Any] = {
        "union_id": tree["grassroots"],
        "full_name": "李四",
        "gender": "male",
        "birth_date": "1980-05-20",
        "national_id": national_id(date(1980, 5, 20)),
        "joined_on": "2015-01-01",
    }
    replacements = {"STREET": tree["street"], "UNKNOWN": new_id()}
    for key, value in change.items():
        value = replacements.get(value, value) if isinstance(value, str) else value
        if value is None:
            body.pop(key)
        else:
            body[key] = value
    r = await post(service, "/v1/members", body)
    problem = assert_problem(r, 422, field)
    if field == "national_id" and body.get("national_id"):
        assert body["national_id"] not in r.text  # the bad value is not echoed back
    assert problem["detail"]


async def test_second_member_with_the_same_national_id_is_a_conflict(
    service: Service, tree: dict[str, str]
) -> None:
    first = await new_member(service, tree["grassroots"])
    nid = first["national_id"]
    again = {
        "union_id": tree["grassroots2"],
        "full_name": "另一个人",
        "gender": "male",
        "birth_date": "1980-05-20",
        "national_id": nid[:-1] + nid[-1].lower(),  # the same number, typed with a small x if any
    }
    r = await post(service, "/v1/members", again)
    assert_problem(r, 409, "national_id")
    assert nid not in r.text

    found = await post(service, "/v1/members/lookup", {"national_id": nid})
    assert found.status_code == 200 and found.json()["member_id"] == first["member_id"]
    assert nid not in found.text
    assert (await post(service, "/v1/members/lookup", {"national_id": nid}, INTEGRATOR)).status_code == 403


# --- card -------------------------------------------------------------------------------------


async def test_card_issue_cancel_replace(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"])
    base = f"/v1/members/{m['member_id']}/card"
    first = card_number()
    service.secrets.append(first)
    r = await post(service, base, {"card_number": first, "issued_on": "2013-04-01"})
    assert r.status_code == 201 and r.json() == {"card_last4": first[-4:], "issued_on": "2013-04-01"}
    assert first not in r.text

    assert_problem(await post(service, base, {"card_number": card_number()}), 409)
    assert_problem(await post(service, base, {"card_number": "1234-5678"}), 422, "card_number")
    assert_problem(await post(service, f"/v1/members/{new_id()}/card", {"card_number": card_number()}), 404)

    second = card_number()
    service.secrets.append(second)
    replaced = await post(service, f"{base}/replace", {"card_number": second, "replaced_on": "2015-02-01"})
    assert replaced.status_code == 201
    assert (
        replaced.json()["card_last4"] == second[-4:] and replaced.json()["replaced_card_last4"] == first[-4:]
    )

    cancelled = await post(service, f"{base}/cancel", {"reason": "lost"})
    assert cancelled.status_code == 200 and cancelled.json()["card_last4"] == second[-4:]
    assert_problem(await post(service, f"{base}/cancel", {}), 409)
    assert_problem(await service.client.post(f"{base}/cancel", headers=STAFF), 409)  # no body at all

    other = await new_member(service, tree["grassroots"])
    taken = await post(service, f"/v1/members/{other['member_id']}/card", {"card_number": second})
    assert_problem(taken, 409, "card_number")

    detail = (await service.client.get(f"/v1/members/{m['member_id']}", headers=STAFF)).json()
    assert detail["card"] is None
    assert [(c["card_last4"], c["status"], c["cancel_reason"]) for c in detail["cards"]] == [
        (first[-4:], "cancelled", "replaced"),
        (second[-4:], "cancelled", "lost"),
    ]


# --- enrolments -------------------------------------------------------------------------------


async def test_enrolment_rules(service: Service, tree: dict[str, str]) -> None:
    man = await new_member(service, tree["grassroots"])
    path = f"/v1/members/{man['member_id']}/enrollments"
    accident = {"plan_code": "accident_injury", "shares": 2, "starts_on": "2016-01-01"}

    assert_problem(await post(service, path, accident), 409)  # no Jing card yet
    await create(service, f"/v1/members/{man['member_id']}/card", {"card_number": card_number()})

    assert_problem(await post(service, path, {**accident, "plan_code": "no_such_plan"}), 422, "plan_code")
    assert_problem(await post(service, path, {**accident, "shares": 0}), 422, "shares")
    assert_problem(await post(service, path, {**accident, "shares": "2"}), 422, "shares")
    assert_problem(await post(service, path, {**accident, "starts_on": 20160101}), 422, "starts_on")
    assert_problem(await post(service, path, {**accident, "price_level": "30"}), 422, "price_level")
    female_plan = {**accident, "plan_code": "female_special_disease"}
    problem = assert_problem(await post(service, path, female_plan), 422)
    assert problem_fields(problem) & {"plan_code", "gender"}
    assert_problem(
        await post(service, path, {**accident, "plan_code": "card_non_work_accident"}), 422, "plan_code"
    )
    assert_problem(await post(service, f"/v1/members/{new_id()}/enrollments", accident), 404)

    r = await post(service, path, {**accident, "price_level": "50"})
    assert r.status_code == 201, r.text
    first = r.json()
    assert first["ends_on"] == "2016-12-31" and uuid.UUID(first["enrollment_id"])
    assert_problem(await post(service, path, {**accident, "starts_on": "2016-06-01"}), 409)  # overlaps
    nxt = await post(service, path, {**accident, "starts_on": "2017-01-01"})
    assert nxt.status_code == 201 and nxt.json()["ends_on"] == "2017-12-31"

    cancel = f"{path}/{first['enrollment_id']}/cancel"
    assert (await post(service, cancel, {"reason": "entered twice"})).status_code == 200
    assert_problem(await post(service, cancel, {}), 409)
    assert_problem(await post(service, f"{path}/{new_id()}/cancel", {}), 404)
    again = await post(service, path, {**accident, "starts_on": "2016-03-01", "ends_on": "2016-12-31"})
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
    assert_problem(await post(service, old_path, accident), 422, "plan_code")  # 61 on 2016-01-01
    ok = await post(service, old_path, {**accident, "starts_on": "2015-02-28", "ends_on": "2015-12-31"})
    assert ok.status_code == 201, ok.text  # 60 then: still inside 16-60
    await create(
        service, f"/v1/members/{elder['member_id']}/leave", {"reason": "retired", "left_on": "2016-03-01"}
    )
    critical = {"plan_code": "critical_illness", "shares": 2, "starts_on": "2016-04-01"}
    assert assert_problem(await post(service, old_path, critical), 409)["code"] == "member_retired"

    woman = await new_member(service, tree["grassroots"], gender="female", full_name="张丽", card=True)
    r = await post(service, f"/v1/members/{woman['member_id']}/enrollments", female_plan)
    assert r.status_code == 201 and r.json()["ends_on"] == "2016-12-31"


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


# --- transfer, leave, search ------------------------------------------------------------------


async def test_transfer_leave_and_search(service: Service) -> None:
    tree = await union_tree(service, label="-搜索")
    name = f"陈{uuid.uuid4().hex[:6]}"
    m = await new_member(service, tree["grassroots"], full_name=name, card=True)
    mid = m["member_id"]
    base = f"/v1/members/{mid}"

    assert_problem(
        await post(service, f"{base}/transfer", {"to_union_id": tree["street"]}), 422, "to_union_id"
    )
    assert_problem(await post(service, f"{base}/transfer", {"to_union_id": new_id()}), 422, "to_union_id")
    assert_problem(
        await post(service, f"{base}/transfer", {"to_union_id": tree["grassroots"]}), 422, "to_union_id"
    )
    moved = await post(
        service, f"{base}/transfer", {"to_union_id": tree["grassroots2"], "transferred_on": "2016-02-01"}
    )
    assert moved.status_code == 200 and moved.json()["union_id"] == tree["grassroots2"]

    in_new = (await service.client.get(f"/v1/unions/{tree['grassroots2']}/members", headers=STAFF)).json()[
        "items"
    ]
    assert [x["member_id"] for x in in_new] == [mid]
    in_old = (await service.client.get(f"/v1/unions/{tree['grassroots']}/members", headers=STAFF)).json()[
        "items"
    ]
    assert in_old == []
    whole_street = await service.client.get(
        f"/v1/members?union_id={tree['street']}&name={name[1:4]}", headers=STAFF
    )
    assert [x["member_id"] for x in whole_street.json()["items"]] == [mid]
    assert whole_street.json()["items"][0]["national_id"].endswith(m["national_id"][-4:])
    wildcard = await service.client.get(f"/v1/members?union_id={tree['street']}&name=%25", headers=STAFF)
    assert wildcard.json()["items"] == []  # % is a character to find, not a wildcard

    assert_problem(await post(service, f"{base}/leave", {"reason": "bored"}), 422, "reason")
    assert_problem(
        await post(service, f"{base}/leave", {"reason": "moved", "left_on": "2016-01-31"}), 422, "left_on"
    )
    left = await post(service, f"{base}/leave", {"reason": "moved", "left_on": "2016-07-01"})
    assert left.status_code == 200 and left.json()["status"] == "left"
    assert_problem(await post(service, f"{base}/leave", {"reason": "died"}), 409)
    assert_problem(await post(service, f"{base}/transfer", {"to_union_id": tree["grassroots"]}), 409)
    late = {"occurred_on": "2016-07-02", "work_related": False, "description": "x", "diagnosis": "y"}
    assert_problem(await post(service, f"{base}/injury-reports", late), 422, "occurred_on")

    detail = (await service.client.get(base, headers=STAFF)).json()
    assert (detail["status"], detail["left_on"], detail["leave_reason"]) == ("left", "2016-07-01", "moved")
    active_only = await service.client.get(
        f"/v1/unions/{tree['street']}/members?status=active", headers=STAFF
    )
    assert active_only.json()["items"] == []
    union = (await service.client.get(f"/v1/unions/{tree['street']}", headers=STAFF)).json()
    assert union["active_members"] == 0


# --- concurrency ------------------------------------------------------------------------------


async def test_concurrent_commands_never_double_book_nor_fail(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"], gender="female", card=True)
    path = f"/v1/members/{m['member_id']}/enrollments"
    same = {"plan_code": "female_special_disease", "shares": 1, "starts_on": "2016-01-01"}
    answers = await asyncio.gather(*[post(service, path, same) for _ in range(6)])
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409, 409, 409]

    years = [
        {"plan_code": "critical_illness", "shares": 1, "starts_on": f"{y}-01-01"} for y in range(2011, 2017)
    ]
    answers = await asyncio.gather(*[post(service, path, body) for body in years])
    assert {r.status_code for r in answers} <= {201, 409}  # a lost race is a 409 to retry, never a 500
    assert all(r.json()["code"] == "concurrent_update" for r in answers if r.status_code == 409)
    detail = (await service.client.get(f"/v1/members/{m['member_id']}", headers=STAFF)).json()
    created = sorted(r.json()["enrollment_id"] for r in answers if r.status_code == 201)
    stored = sorted(e["enrollment_id"] for e in detail["enrollments"] if e["plan_code"] == "critical_illness")
    assert created == stored and created

    nid = national_id(date(1981, 1, 1))
    service.secrets.append(nid)
    person = {
        "union_id": tree["grassroots"],
        "full_name": "孙七",
        "gender": "male",
        "birth_date": "1981-01-01",
        "national_id": nid,
    }
    answers = await asyncio.gather(*[post(service, "/v1/members", person) for _ in range(6)])
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409, 409, 409]


# --- idempotency and auth ---------------------------------------------------------------------


async def test_idempotency_key_replays_the_first_answer(service: Service, tree: dict[str, str]) -> None:
    nid = national_id(date(1979, 2, 3))
    service.secrets.append(nid)
    body = {
        "union_id": tree["grassroots"],
        "full_name": f"刘{uuid.uuid4().hex[:6]}",
        "gender": "male",
        "birth_date": "1979-02-03",
        "national_id": nid,
    }
    key = {"Idempotency-Key": str(uuid.uuid4())}
    first = await post(service, "/v1/members", body, {**STAFF, **key})
    second = await post(service, "/v1/members", body, {**STAFF, **key})
    assert first.status_code == second.status_code == 201
    assert first.json() == second.json()
    assert second.headers.get("Idempotent-Replayed") == "true"
    member_id = first.json()["member_id"]

    different = await post(service, "/v1/members", {**body, "full_name": "别人"}, {**STAFF, **key})
    assert_problem(different, 422, "Idempotency-Key")
    # without the key the same person is refused, not duplicated
    assert_problem(await post(service, "/v1/members", body), 409, "national_id")

    found = (await service.client.get(f"/v1/members?name={body['full_name']}", headers=STAFF)).json()["items"]
    assert [f["member_id"] for f in found] == [member_id]
    joined = [e for e in envelopes(await published(service), member_id) if e["event_type"] == "MemberJoined"]
    assert len(joined) == 1

    async with service.runtime.engine.connect() as conn:
        hashes = await conn.scalar(
            sa.text("SELECT string_agg(request_hash || body::text, ' ') FROM idempotency_keys")
        )
    assert nid not in (hashes or "")

    report = {"occurred_on": "2016-08-10", "work_related": True, "description": "a", "diagnosis": "b"}
    rkey = {**STAFF, "Idempotency-Key": str(uuid.uuid4())}
    r1 = await post(service, f"/v1/members/{member_id}/injury-reports", report, rkey)
    r2 = await post(service, f"/v1/members/{member_id}/injury-reports", report, rkey)
    assert r1.status_code == r2.status_code == 202 and r1.json() == r2.json()
    listed = (await service.client.get(f"/v1/members/{member_id}/injury-reports", headers=STAFF)).json()[
        "items"
    ]
    assert len(listed) == 1


async def test_every_v1_call_needs_a_token_and_the_right_role(service: Service, tree: dict[str, str]) -> None:
    body = {"name": "x", "level": "municipal"}
    assert_problem(await post(service, "/v1/unions", body, {}), 401)
    assert_problem(await post(service, "/v1/unions", body, {"Authorization": "Bearer nope"}), 401)
    assert_problem(await post(service, "/v1/unions", body, INTEGRATOR), 403)
    assert_problem(
        await post(service, "/v1/unions", body, {"Authorization": "Bearer local-counselor-token"}), 403
    )
    assert_problem(await service.client.get(f"/v1/unions/{tree['street']}"), 401)
    assert (await service.client.get(f"/v1/unions/{tree['street']}", headers=INTEGRATOR)).status_code == 200
    m = await new_member(service, tree["grassroots"])
    card = {"card_number": card_number()}
    assert_problem(await post(service, f"/v1/members/{m['member_id']}/card", card, INTEGRATOR), 403)
    assert_problem(await service.client.get(f"/v1/members/{m['member_id']}"), 401)
    assert (await post(service, f"/v1/members/{m['member_id']}/card", card, SUPERVISOR)).status_code == 201
    assert (await service.client.get("/healthz")).status_code == 200  # probes need no token
    assert (await service.client.get("/readyz")).json()["ready"] is True


# --- the event contract on Kafka --------------------------------------------------------------


async def test_commands_publish_contract_envelopes(service: Service, tree: dict[str, str]) -> None:
    correlation = str(uuid.uuid4())
    joined = await post(
        service,
        "/v1/members",
        {
            "union_id": tree["grassroots"],
            "full_name": "周强",
            "gender": "male",
            "birth_date": "1982-11-30",
            "national_id": (nid := national_id(date(1982, 11, 30))),
            "phone": (tel := "13912345678"),
            "joined_on": "2011-05-01",
        },
        {**STAFF, "X-Correlation-ID": correlation},
    )
    service.secrets.extend([nid, tel])
    assert joined.headers["X-Correlation-ID"] == correlation
    mid = joined.json()["member_id"]
    base = f"/v1/members/{mid}"
    await create(service, f"{base}/card", {"card_number": (c1 := card_number()), "issued_on": "2012-01-01"})
    enrolled = await create(
        service,
        f"{base}/enrollments",
        {"plan_code": "accident_injury", "shares": 1, "starts_on": "2016-01-01"},
    )
    await create(
        service, f"{base}/enrollments/{enrolled['enrollment_id']}/cancel", {"cancelled_on": "2016-02-01"}
    )
    await create(
        service, f"{base}/transfer", {"to_union_id": tree["grassroots2"], "transferred_on": "2016-03-01"}
    )
    await create(service, f"{base}/card/replace", {"card_number": (c2 := card_number())})
    report = await create(
        service,
        f"{base}/injury-reports",
        {
            "occurred_on": "2016-08-02",
            "work_related": True,
            "description": "d",
            "diagnosis": "g",
            "traffic_accident": True,
        },
    )
    await create(service, f"{base}/leave", {"reason": "retired"})
    service.secrets.extend([c1, c2])

    messages = await published(service)
    member_events = envelopes(messages, mid)
    assert [e["event_type"] for e in member_events] == [
        "MemberJoined",
        "CardIssued",
        "PlanEnrolled",
        "EnrollmentCancelled",
        "MemberTransferred",
        "CardCancelled",
        "CardIssued",
        "MemberLeft",
    ]
    assert [e["aggregate_version"] for e in member_events] == list(range(1, 9))
    for e in member_events:
        assert set(e) == ENVELOPE_FIELDS
        assert (e["aggregate_type"], e["aggregate_id"], e["producer"], e["schema_version"]) == (
            "Member",
            mid,
            "membership",
            1,
        )
        assert e["occurred_at"].endswith("Z") and uuid.UUID(e["event_id"]) and e["causation_id"] is None
        assert e["data"]["member_id"] == mid
    assert member_events[0]["correlation_id"] == correlation
    assert member_events[1]["correlation_id"] != correlation  # each request has its own

    joined_data = member_events[0]["data"]
    assert {k: joined_data[k] for k in ("union_id", "full_name", "gender", "birth_date", "joined_on")} == {
        "union_id": tree["grassroots"],
        "full_name": "周强",
        "gender": "male",
        "birth_date": "1982-11-30",
        "joined_on": "2011-05-01",
    }
    assert member_events[1]["data"] == {"member_id": mid, "card_last4": c1[-4:], "issued_on": "2012-01-01"}
    enrol = member_events[2]["data"]
    assert (enrol["enrollment_id"], enrol["plan_code"], enrol["shares"]) == (
        enrolled["enrollment_id"],
        "accident_injury",
        1,
    )
    assert (enrol["coverage_starts_on"], enrol["coverage_ends_on"]) == ("2016-01-01", "2016-12-31")
    assert member_events[4]["data"]["from_union_id"] == tree["grassroots"]
    assert (
        member_events[5]["data"]["reason"] == "replaced" and member_events[6]["data"]["card_last4"] == c2[-4:]
    )
    assert member_events[7]["data"] == {"member_id": mid, "left_on": "2016-08-10", "reason": "retired"}

    [injury] = envelopes(messages, report["report_id"])
    assert injury["data"]["member_version"] == 7 and injury["data"]["traffic_accident"] is True

    [union_event] = envelopes(messages, tree["municipal"])
    assert union_event["event_type"] == "UnionRegistered" and union_event["schema_version"] == 2
    assert union_event["data"]["parent_union_id"] is None

    for m in messages:
        if m.key in (mid.encode(), report["report_id"].encode()):
            envelope = json.loads(m.value)
            assert set(m.headers) >= set(HEADER_NAMES)
            assert m.headers["event_type"].decode() == envelope["event_type"]
            assert m.headers["event_id"].decode() == envelope["event_id"]
            assert m.headers["schema_version"].decode() == str(envelope["schema_version"])
            assert m.headers["correlation_id"].decode() == envelope["correlation_id"]
            EventEnvelope.from_bytes(m.value)  # and it parses as the shared envelope

    timeline = (await service.client.get(f"{base}/timeline", headers=INTEGRATOR)).json()["items"]
    assert [t["event_type"] for t in timeline] == [e["event_type"] for e in member_events[:6]] + [
        "CardIssued",
        "InjuryReported",
        "MemberLeft",
    ]


# --- claims reported back ---------------------------------------------------------------------


def claims_envelope(event: DomainEvent, aggregate_id: str, version: int) -> EventEnvelope:
    return EventEnvelope(
        event_id=uuid.uuid4(),
        event_type=event.event_type,
        schema_version=event.schema_version,
        aggregate_type="Claim",
        aggregate_id=aggregate_id,
        aggregate_version=version,
        occurred_at=utcnow(),
        producer="claims",
        correlation_id=uuid.uuid4(),
        data=event.model_dump(mode="json"),
    )


async def test_claims_events_reach_the_member_record(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"], card=True)
    mid = m["member_id"]
    report = await create(
        service,
        f"/v1/members/{mid}/injury-reports",
        {
            "occurred_on": "2016-08-01",
            "work_related": False,
            "description": "手伤",
            "diagnosis": "裂伤",
        },
    )
    rid = uuid.UUID(report["report_id"])
    claim_id = uuid.uuid4()
    filed = claims_contract.ClaimFiled(
        claim_id=claim_id,
        member_id=uuid.UUID(mid),
        report_id=rid,
        plan_code="card_non_work_accident",
        benefit="card",
        enrollment_id=None,
        required_documents=["incident_certificate", "diagnosis"],
        incident_on=date(2016, 8, 1),
        filed_on=date(2016, 8, 10),
    )
    approved = claims_contract.ClaimApproved(
        claim_id=claim_id, amount=Decimal("1500.00"), approved_on=date(2016, 8, 20)
    )
    paid = claims_contract.ClaimPaid(
        claim_id=claim_id,
        member_id=uuid.UUID(mid),
        plan_code="card_non_work_accident",
        amount=Decimal("1500.00"),
        paid_on=date(2016, 8, 25),
    )
    sent = [claims_envelope(e, str(claim_id), i) for i, e in enumerate((filed, approved, paid), start=1)]
    other = await new_member(service, tree["grassroots"])
    other_report = await create(
        service,
        f"/v1/members/{other['member_id']}/injury-reports",
        {
            "occurred_on": "2016-08-01",
            "work_related": True,
            "description": "x",
            "diagnosis": "y",
        },
    )
    nothing = claims_contract.NoCoverageFound(
        report_id=uuid.UUID(other_report["report_id"]),
        member_id=uuid.UUID(other["member_id"]),
        reasons=[
            "no accident_injury enrolment covers 2016-08-01",
            "work-related: the card benefit does not apply",
        ],
    )
    no_cover = claims_envelope(nothing, other_report["report_id"], 1)
    unknown = sent[0].model_copy(update={"event_id": uuid.uuid4(), "event_type": "ClaimSomethingNew"})

    producer = AIOKafkaProducer(bootstrap_servers=service.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for env in [*sent, sent[1], no_cover, unknown]:  # one redelivery, one unknown type
            await producer.send_and_wait(
                service.claims_topic,
                env.to_bytes(),
                key=env.aggregate_id.encode(),
                headers=env.kafka_headers(),
            )
    finally:
        await producer.stop()

    async def claim_paid() -> Any:
        r = await service.client.get(f"/v1/members/{mid}", headers=STAFF)
        claims = r.json()["claims"]
        return claims if claims and claims[0]["status"] == "paid" else None

    [claim] = await eventually(claim_paid, timeout=60)
    assert (claim["claim_id"], claim["amount"], claim["benefit"]) == (str(claim_id), "1500.00", "card")
    assert claim["report_id"] == str(rid)

    timeline = (await service.client.get(f"/v1/members/{mid}/timeline", headers=STAFF)).json()["items"]
    claims_part = [(t["source"], t["event_type"]) for t in timeline if t["source"] == "claims"]
    assert claims_part == [("claims", "ClaimFiled"), ("claims", "ClaimApproved"), ("claims", "ClaimPaid")]

    async def no_cover_seen() -> Any:
        r = await service.client.get(f"/v1/injury-reports/{other_report['report_id']}", headers=STAFF)
        return r.json()["no_coverage_reasons"]

    assert await eventually(no_cover_seen, timeout=30) == nothing.reasons
    detail = (await service.client.get(f"/v1/injury-reports/{rid}", headers=STAFF)).json()
    assert [c["claim_id"] for c in detail["claims"]] == [str(claim_id)]


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
        {"plan_code": "charity_medical", "shares": 1, "starts_on": "2016-03-01"},
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


# --- statistics -------------------------------------------------------------------------------


async def test_enrolment_statistics_per_year(service: Service) -> None:
    tree = await union_tree(service, label="-统计")
    women = [await new_member(service, tree["grassroots"], gender="female", card=True) for _ in range(3)]
    man = await new_member(service, tree["grassroots2"], card=True)
    for w in women:
        await create(
            service,
            f"/v1/members/{w['member_id']}/enrollments",
            {"plan_code": "female_special_disease", "shares": 6, "starts_on": "2015-01-01"},
        )
        await create(
            service,
            f"/v1/members/{w['member_id']}/enrollments",
            {"plan_code": "female_special_disease", "shares": 5, "starts_on": "2016-01-01"},
        )
    await create(
        service,
        f"/v1/members/{man['member_id']}/enrollments",
        {"plan_code": "accident_injury", "shares": 4, "starts_on": "2016-01-01"},
    )
    dropped = await create(
        service,
        f"/v1/members/{man['member_id']}/enrollments",
        {"plan_code": "critical_illness", "shares": 2, "starts_on": "2016-02-01"},
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


# --- operations -------------------------------------------------------------------------------


async def test_read_models_rebuild_to_the_same_answers(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"], card=True)
    await create(
        service,
        f"/v1/members/{m['member_id']}/enrollments",
        {"plan_code": "accident_injury", "shares": 3, "starts_on": "2016-01-01"},
    )
    before = (await service.client.get(f"/v1/members/{m['member_id']}", headers=STAFF)).json()
    timeline_before = (
        await service.client.get(f"/v1/members/{m['member_id']}/timeline", headers=STAFF)
    ).json()
    plans_before = (await service.client.get("/v1/plans", headers=STAFF)).json()

    replayed = await rebuild_read_models(service.runtime.engine, service.runtime.store)
    assert replayed > 0
    after = (await service.client.get(f"/v1/members/{m['member_id']}", headers=STAFF)).json()
    assert after == before  # the vault (national ID, phone) and claims models survive a rebuild
    assert (
        await service.client.get(f"/v1/members/{m['member_id']}/timeline", headers=STAFF)
    ).json() == timeline_before
    assert (await service.client.get("/v1/plans", headers=STAFF)).json() == plans_before


async def test_migrated_schema_matches_the_table_definitions(service: Service) -> None:
    def diff(sync_conn: sa.Connection) -> list[Any]:
        context = MigrationContext.configure(sync_conn)
        return list(compare_metadata(context, [core_metadata, consumer_metadata, membership_metadata]))  # type: ignore[arg-type]

    async with service.runtime.engine.connect() as conn:
        assert await conn.run_sync(diff) == []


async def test_ids_of_another_kind_of_record_are_unknown_not_misapplied(
    service: Service, tree: dict[str, str]
) -> None:
    """A union's id where a member's is expected (and the reverse) is 'unknown', never a 500
    and never an event appended to the wrong aggregate's stream."""
    member = await new_member(service, tree["grassroots"])
    before = await stored_event_count(service)
    union_id = tree["grassroots"]
    card = await post(service, f"/v1/members/{union_id}/card", {"card_number": card_number()})
    assert card.status_code == 404
    transfer = await post(service, f"/v1/members/{union_id}/transfer", {"to_union_id": tree["grassroots2"]})
    assert transfer.status_code == 404
    as_union = {
        "union_id": member["member_id"],
        "full_name": "张三",
        "gender": "male",
        "birth_date": "1980-01-01",
        "national_id": national_id(date(1980, 1, 1)),
    }
    assert_problem(await post(service, "/v1/members", as_union), 422, "union_id")
    assert await stored_event_count(service) == before


async def test_concurrent_retries_with_one_idempotency_key_answer_once(
    service: Service, tree: dict[str, str]
) -> None:
    member = await new_member(service, tree["grassroots"], card=True)
    body = {"plan_code": "accident_injury", "shares": 1, "starts_on": "2016-01-01"}
    headers = {**STAFF, "Idempotency-Key": str(uuid.uuid4())}
    answers = await asyncio.gather(
        *(post(service, f"/v1/members/{member['member_id']}/enrollments", body, headers) for _ in range(4))
    )
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.json()["enrollment_id"] for a in answers}) == 1


# --- last: nothing personal ever left the service ---------------------------------------------


async def test_no_personal_data_on_kafka_in_events_or_logs(service: Service, tree: dict[str, str]) -> None:
    await new_member(service, tree["grassroots"], card=True)  # so this test stands on its own too
    assert len(service.secrets) >= 3
    messages = await published(service)
    assert len({json.loads(m.value)["event_id"] for m in messages}) >= await _count_events(service)
    for m in messages:
        raw = m.value + (m.key or b"") + b"".join(m.headers.values())
        for secret in service.secrets:
            assert secret.encode() not in raw, "personal data on Kafka"
    async with service.runtime.engine.connect() as conn:
        stored = await conn.scalar(sa.text("SELECT string_agg(data::text, ' ') FROM events"))
    logs = "\n".join(service.logs)
    assert "INSERT INTO member_identities" in logs  # the collector saw SQL with its parameters too
    for secret in service.secrets:
        assert secret not in (stored or ""), "personal data in the event store"
        assert secret not in logs, "personal data in the logs"
    dlq = await read_topic(service.kafka, f"{service.claims_topic}.dlq", expect=1, timeout=2)
    assert dlq == []  # the claims consumer handled (or skipped) everything it was sent


async def _count_events(service: Service) -> int:
    async with service.runtime.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(events_table)) or 0)
