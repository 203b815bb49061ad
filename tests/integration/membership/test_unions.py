"""Unions through HTTP: the organisation tree, checked and readable. On the real PostgreSQL and Kafka."""

from __future__ import annotations

import pytest

from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    INTEGRATOR,
    STAFF,
    assert_nothing_personal_left,
    assert_problem,
    new_id,
    post,
)

pytestmark = pytest.mark.integration


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


# --- last: nothing personal ever left the service ---------------------------------------------


async def test_no_personal_data_on_kafka_in_events_or_logs(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])
