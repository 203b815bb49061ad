"""Who read an injury's details: every attempt on GET /v1/injury-reports/{id}, allowed or refused,
is committed to the shared append-only audit trail first; supervisors query it."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    COUNSELOR,
    INTEGRATOR,
    STAFF,
    SUPERVISOR,
    create,
    new_id,
    new_member,
)

pytestmark = pytest.mark.integration


async def _report(service: Service, tree: dict[str, str]) -> str:
    m = await new_member(service, tree["grassroots"], card=True)
    description, diagnosis = f"摔伤右手 {new_id()}", f"右手腕骨折 {new_id()}"
    service.secrets.extend([description, diagnosis])
    body = {
        "occurred_on": "2016-08-01",
        "work_related": False,
        "description": description,
        "diagnosis": diagnosis,
    }
    answer = await create(service, f"/v1/members/{m['member_id']}/injury-reports", body)
    return str(answer["report_id"])


async def _audit(service: Service, report_id: str) -> list[dict[str, object]]:
    r = await service.client.get("/v1/audit", params={"report_id": report_id}, headers=SUPERVISOR)
    assert r.status_code == 200, r.text
    items: list[dict[str, object]] = r.json()["items"]
    return items


async def test_every_read_of_the_details_is_on_record_allowed_or_refused(
    service: Service, tree: dict[str, str]
) -> None:
    report_id = await _report(service, tree)
    assert await _audit(service, report_id) == []  # reporting is not reading
    path = f"/v1/injury-reports/{report_id}"
    assert (await service.client.get(path, headers=STAFF)).status_code == 200
    assert (await service.client.get(path, headers=INTEGRATOR)).status_code == 403
    assert (await service.client.get(path, headers=COUNSELOR)).status_code == 403
    assert (await service.client.get(path, headers=SUPERVISOR)).status_code == 200
    entries = await _audit(service, report_id)
    assert [(e["role"], e["allowed"]) for e in entries] == [
        ("staff", True),
        ("integrator", False),
        ("counselor", False),
        ("supervisor", True),
    ]
    assert all(e["report_id"] == report_id and e["action"] == "read_injury_details" for e in entries)
    assert entries[1]["reason"] == "role integrator may not read injury details"
    assert entries[0]["reason"] is None and entries[0]["subject"] and entries[0]["at"]
    text = str(entries)
    assert not any(secret in text for secret in service.secrets)


async def test_a_read_of_an_unknown_report_is_recorded_and_404(service: Service) -> None:
    unknown = new_id()
    assert (await service.client.get(f"/v1/injury-reports/{unknown}", headers=STAFF)).status_code == 404
    [entry] = await _audit(service, unknown)
    assert entry["allowed"] is False and entry["reason"] == "no such injury report"


async def test_only_supervisors_query_the_trail_and_it_is_append_only(
    service: Service, tree: dict[str, str]
) -> None:
    report_id = await _report(service, tree)
    await service.client.get(f"/v1/injury-reports/{report_id}", headers=STAFF)
    for who in (STAFF, INTEGRATOR, COUNSELOR):
        r = await service.client.get("/v1/audit", params={"report_id": report_id}, headers=who)
        assert r.status_code == 403
    everything = (await service.client.get("/v1/audit", headers=SUPERVISOR)).json()["items"]
    assert report_id in {e["report_id"] for e in everything}
    with pytest.raises(Exception, match="append-only"):
        async with service.runtime.engine.begin() as conn:
            await conn.execute(sa.text("DELETE FROM access_audit"))
    assert len(await _audit(service, report_id)) == 1
