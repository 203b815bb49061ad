"""Issue 16 on the claims service: the shared edge and bounded types hold here too."""

from __future__ import annotations

import uuid

import pytest

from tests.integration.claims.conftest import STAFF, ClaimsUnderTest

pytestmark = pytest.mark.integration


async def test_hostile_input_gets_4xx_problems_never_500(claims: ClaimsUnderTest) -> None:
    http = claims.http
    claim = str(uuid.uuid4())

    def fields(r: object) -> set[str]:
        body = r.json()  # type: ignore[attr-defined]
        assert r.headers["content-type"].startswith("application/problem+json")  # type: ignore[attr-defined]
        return {e["field"] for e in body.get("errors", [])}

    r = await http.post(
        f"/v1/claims/{claim}/reject", json={"reason_code": "other", "note": "a\u0000b"}, headers=STAFF
    )
    assert r.status_code == 422 and "note" in fields(r)
    r = await http.get("/v1/claims", params={"plan_code": "acc\x00"}, headers=STAFF)
    assert r.status_code == 422 and "plan_code" in fields(r)
    r = await http.get("/v1/claims", params={"limit": str(2**63)}, headers=STAFF)
    assert r.status_code == 422 and "limit" in fields(r)
    r = await http.post(f"/v1/claims/{claim}/documents", json={"documents": ["x"] * 51}, headers=STAFF)
    assert r.status_code == 422 and "documents" in fields(r)
    r = await http.post(
        f"/v1/claims/{claim}/approve",
        content=b'{"amount": "1.00", "amount": "99999.00"}',
        headers={**STAFF, "Content-Type": "application/json"},
    )
    assert r.status_code == 422 and fields(r) == {"amount"}
    r = await http.post(
        f"/v1/claims/{claim}/approve", content=b"{bad", headers={"Content-Type": "application/json"}
    )
    assert r.status_code == 401
    r = await http.get("/metrics")
    assert r.status_code == 401
    doc = (await http.get("/openapi.json")).json()
    amount = doc["components"]["schemas"]["ApproveIn"]["properties"]["amount"]
    assert {"type": "string", "pattern": r"^[0-9]{1,10}(\.[0-9]{1,2})?$"} in amount["anyOf"], amount
