"""Members through HTTP: joining (personal data masked), validation, transfer, leave, search
(on the real PostgreSQL and Kafka)."""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from services.membership.tables import card_numbers, member_identities
from tests.identifiers import with_wrong_check
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    INTEGRATOR,
    STAFF,
    assert_nothing_personal_left,
    assert_problem,
    create,
    national_id,
    new_id,
    new_member,
    post,
    union_tree,
)

pytestmark = pytest.mark.integration


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
        ({"national_id": with_wrong_check(national_id(date(1980, 5, 20)))}, "national_id"),  # a typo
        ({"birth_date": "1980-05-21"}, "birth_date"),  # the ID says 1980-05-20
        ({"birth_date": "1980-05-19"}, "birth_date"),
        ({"gender": "female"}, "gender"),  # the ID's 17th digit is odd: a man
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
    if body.get("national_id"):
        assert body["national_id"] not in r.text  # the ID is never echoed back
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


# --- last: nothing personal ever left the service ---------------------------------------------


async def test_no_personal_data_on_kafka_in_events_or_logs(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])
