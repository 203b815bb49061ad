"""Issue 16: what a hostile client sent, and what the membership service must answer instead.

Each case once gave a 500, a silent "last wins", an unbounded echo or an event Kafka refuses.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.integration.membership.conftest import TODAY, Service
from tests.integration.membership.support import (
    STAFF,
    card_number,
    national_id,
    new_member,
    problem_fields,
    union_tree,
)

pytestmark = pytest.mark.integration

JSON = {**STAFF, "Content-Type": "application/json"}


@pytest.fixture(scope="module")
async def tree(service: Service) -> dict[str, str]:
    return await union_tree(service, label="·hostile")


def assert_problem(response: Any, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    if field is not None:
        assert field in problem_fields(body), body
    return body


def plan(name: str = "互助计划", **extra: Any) -> dict[str, Any]:
    return {"code": "hostile_plan", "name": name, "benefit": "paid", "claim_kind": "illness", **extra}


# --- 2. NUL bytes ---------------------------------------------------------------------------


async def test_nul_in_any_body_field_is_422_naming_it(service: Service, tree: dict[str, str]) -> None:
    union = tree["grassroots"]
    member = await new_member(service, union, card=True)
    mid = member["member_id"]
    cases: list[tuple[str, str, dict[str, Any], str]] = [
        ("POST", "/v1/unions", {"name": "a\u0000b", "level": "municipal"}, "name"),
        (
            "POST",
            "/v1/members",
            {
                "union_id": union,
                "full_name": "王\u0000",
                "gender": "male",
                "birth_date": "1980-01-01",
                "national_id": "x",
            },
            "full_name",
        ),
        ("POST", f"/v1/members/{mid}/card/cancel", {"reason": "lost\u0000"}, "reason"),
        (
            "POST",
            f"/v1/members/{mid}/enrollments",
            {"plan_code": "accident\u0000", "shares": 1, "starts_on": "2016-08-01"},
            "plan_code",
        ),
        ("PUT", "/v1/plans/hostile_plan", plan("a\u0000b"), "name"),
        ("PUT", "/v1/plans/hostile_plan", plan(**{"price_levels": ["1"], "n\u0000": 1}), "n"),
    ]
    for method, path, body, field in cases:
        r = await service.client.request(method, path, json=body, headers=STAFF)
        assert_problem(r, 422, field)


async def test_nul_in_query_and_path_parameters_is_422_naming_them(service: Service) -> None:
    assert_problem(
        await service.client.get("/v1/members", params={"name": "a\x00b"}, headers=STAFF), 422, "name"
    )
    assert_problem(await service.client.get("/v1/plans/acc%00ident", headers=STAFF), 422, "code")
    assert_problem(await service.client.put("/v1/plans/acc%00ident", json=plan(), headers=STAFF), 422, "code")


# --- 3. bounded integers --------------------------------------------------------------------


async def test_offsets_beyond_int64_are_422_not_500(service: Service, tree: dict[str, str]) -> None:
    huge = str(2**63)
    assert_problem(
        await service.client.get("/v1/members", params={"offset": huge}, headers=STAFF), 422, "offset"
    )
    assert_problem(
        await service.client.get(
            f"/v1/unions/{tree['municipal']}/members", params={"offset": huge}, headers=STAFF
        ),
        422,
        "offset",
    )
    ok = await service.client.get("/v1/members", params={"offset": str(2**31 - 1)}, headers=STAFF)
    assert ok.status_code == 200 and ok.json()["items"] == []


# --- 4. authentication first, bodies capped ------------------------------------------------


async def test_anonymous_garbage_is_401_before_the_body_is_parsed(service: Service) -> None:
    r = await service.client.post("/v1/unions", content=b"{bad", headers={"Content-Type": "application/json"})
    assert_problem(r, 401)
    r = await service.client.post(
        "/v1/unions",
        content=b"{bad",
        headers={"Content-Type": "application/json", "Authorization": "Bearer no"},
    )
    assert_problem(r, 401)


async def test_a_declared_oversized_body_is_413_without_reading_it(service: Service) -> None:
    limit = service.settings.max_body_bytes
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):  # 16 MB if read to the end
            pulled += 1
            yield b" " * 16384

    r = await service.client.post(
        "/v1/unions", content=body(), headers={**JSON, "Content-Length": str(1000 * 16384)}
    )
    assert_problem(r, 413, "body")
    assert pulled <= 1, "refused on Content-Length alone"
    assert limit == 64 * 1024


async def test_a_chunked_oversized_body_is_413_after_at_most_the_limit(service: Service) -> None:
    pulled = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal pulled
        for _ in range(1000):
            pulled += 1
            yield b" " * 16384

    r = await service.client.post("/v1/unions", content=body(), headers=JSON)  # no length: chunked
    body_json = assert_problem(r, 413, "body")
    assert body_json["code"] == "body_too_large"
    assert pulled <= 6, f"read {pulled} chunks of 16 KiB for a 64 KiB limit"
    # A body just under the limit is still read and judged on its content.
    small = json.dumps({"name": "x" * 60_000, "level": "municipal"})
    assert_problem(await service.client.post("/v1/unions", content=small, headers=JSON), 422, "name")


# --- 6. echoes, duplicate keys, the card route ---------------------------------------------


async def test_error_answers_do_not_echo_large_values(service: Service, tree: dict[str, str]) -> None:
    html = "<script>alert(1)</script>" * 2400  # 60 kB
    r = await service.client.post("/v1/unions", json={"name": "ok", "level": html}, headers=STAFF)
    assert_problem(r, 422, "level")
    assert len(r.content) < 2000, len(r.content)
    assert "input" not in r.json()["errors"][0]
    r = await service.client.put("/v1/plans/hostile_plan", json=plan(html), headers=STAFF)
    assert_problem(r, 422, "name")
    assert len(r.content) < 2000 and "<script>" not in r.text


async def test_duplicate_json_keys_are_422_naming_the_key(service: Service, tree: dict[str, str]) -> None:
    nid = national_id(TODAY.replace(year=1980))
    service.secrets.append(nid)
    union = tree["grassroots"]
    raw = (
        f'{{"union_id": "{union}", "full_name": "王", "gender": "male", "birth_date": "1980-08-10",'
        f' "national_id": "x", "national_id": "{nid}"}}'
    )
    r = await service.client.post("/v1/members", content=raw, headers=JSON)
    body = assert_problem(r, 422, "national_id")
    assert body["code"] == "duplicate_key"
    assert nid not in r.text


async def test_replacing_a_card_by_its_own_number_is_409(service: Service, tree: dict[str, str]) -> None:
    member = await new_member(service, tree["grassroots"], card=True)
    path = f"/v1/members/{member['member_id']}/card/replace"
    same = await service.client.post(path, json={"card_number": member["card_number"]}, headers=STAFF)
    assert assert_problem(same, 409)["code"] == "same_card_number"
    future = await service.client.post(
        path, json={"card_number": card_number(), "replaced_on": "2099-01-01"}, headers=STAFF
    )
    assert_problem(future, 422, "replaced_on")
    number = card_number()
    service.secrets.append(number)
    ok = await service.client.post(path, json={"card_number": number}, headers=STAFF)
    assert ok.status_code == 201, ok.text


async def test_metrics_need_the_metrics_token(service: Service) -> None:
    assert_problem(await service.client.get("/metrics"), 401)
    assert_problem(await service.client.get("/metrics", headers=STAFF), 401)
    r = await service.client.get("/metrics", headers={"Authorization": "Bearer local-metrics-token"})
    assert r.status_code == 200 and "relay_held_back_events" in r.text


# --- 1. events over the configured size ----------------------------------------------------


async def test_an_event_over_the_size_limit_is_413_naming_the_field(service: Service) -> None:
    store = service.runtime.store
    before = store.max_event_bytes
    store.max_event_bytes = 1024  # small, so a valid request can reach it
    try:
        r = await service.client.put(
            "/v1/plans/hostile_big", json={**plan("险" * 200), "code": "hostile_big"}, headers=STAFF
        )
    finally:
        store.max_event_bytes = before
    body = assert_problem(r, 413, "name")
    assert body["code"] == "event_too_large"
    assert (await service.client.get("/v1/plans/hostile_big", headers=STAFF)).status_code == 404


# --- 7. OpenAPI -----------------------------------------------------------------------------


async def test_openapi_documents_bearer_security_and_problem_responses(service: Service) -> None:
    doc = (await service.client.get("/openapi.json")).json()
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http",
        "scheme": "bearer",
        "description": doc["components"]["securitySchemes"]["bearer"]["description"],
    }
    assert "HTTPValidationError" not in doc["components"]["schemas"]
    for path, operations in doc["paths"].items():
        if not path.startswith("/v1"):
            continue
        for method, op in operations.items():
            assert op["security"] == [{"bearer": []}], (method, path)
            expected = {"400", "401", "403", "404", "409", "422"} | ({"413"} if method != "get" else set())
            assert expected <= set(op["responses"]), (method, path)
            for status in expected:
                assert list(op["responses"][status]["content"]) == ["application/problem+json"]
    enrol = doc["components"]["schemas"]["EnrollmentIn"]["properties"]["price_level"]
    assert "pattern" in json.dumps(enrol), enrol


async def test_405_lists_every_method_of_the_path(service: Service) -> None:
    r = await service.client.delete("/v1/plans/accident_injury", headers=STAFF)
    assert_problem(r, 405)
    assert set(r.headers["allow"].replace(" ", "").split(",")) == {"GET", "PUT"}
