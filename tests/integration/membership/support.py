"""Helpers for the membership integration tests: realistic identifiers, a union tree, members,
and reading what really reached Kafka."""

from __future__ import annotations

import json
import random
import uuid
from datetime import date
from typing import Any

import sqlalchemy as sa

from shared.tables import events
from tests.identifiers import card_number, national_id
from tests.integration.membership.conftest import Service
from tests.kafka_support import Received, read_topic

STAFF = {"Authorization": "Bearer local-staff-token"}
SUPERVISOR = {"Authorization": "Bearer local-supervisor-token"}
INTEGRATOR = {"Authorization": "Bearer local-integrator-token"}
COUNSELOR = {"Authorization": "Bearer local-counselor-token"}


def phone() -> str:
    return f"139{random.randrange(10**8):08d}"


async def create(service: Service, path: str, body: dict[str, Any], **headers: str) -> dict[str, Any]:
    r = await service.client.post(path, json=body, headers={**STAFF, **headers})
    assert r.status_code in (200, 201, 202), f"{path}: {r.status_code} {r.text}"
    answer: dict[str, Any] = r.json()
    return answer


async def union_tree(service: Service, label: str = "") -> dict[str, str]:
    """municipal -> district -> street -> two grassroots unions; returns their ids by role."""
    ids: dict[str, str] = {}
    parent: str | None = None
    for level, name in (
        ("municipal", "北京市总工会"),
        ("district", "顺义区总工会"),
        ("street", "石园街道总工会"),
        ("grassroots", "五里仓第二社区联合工会"),
    ):
        body: dict[str, Any] = {"name": f"{name}{label}", "level": level}
        if parent:
            body["parent_id"] = parent
        ids[level] = parent = (await create(service, "/v1/unions", body))["union_id"]
    other = {"name": f"石园街道机关工会{label}", "level": "grassroots", "parent_id": ids["street"]}
    ids["grassroots2"] = (await create(service, "/v1/unions", other))["union_id"]
    return ids


async def new_member(
    service: Service,
    union_id: str,
    *,
    gender: str = "male",
    birth_date: date = date(1980, 5, 20),
    joined_on: date = date(2010, 3, 1),
    full_name: str = "王建国",
    with_phone: bool = True,
    card: bool = False,
) -> dict[str, Any]:
    """Join a member (optionally with a card); returns the ids and the secrets used."""
    nid = national_id(birth_date, female=gender == "female")
    tel = phone() if with_phone else None
    service.secrets.append(nid)
    body: dict[str, Any] = {
        "union_id": union_id,
        "full_name": full_name,
        "gender": gender,
        "birth_date": birth_date.isoformat(),
        "national_id": nid,
        "joined_on": joined_on.isoformat(),
    }
    if tel:
        service.secrets.append(tel)
        body["phone"] = tel
    member_id = (await create(service, "/v1/members", body))["member_id"]
    out: dict[str, Any] = {"member_id": member_id, "national_id": nid, "phone": tel}
    if card:
        number = card_number()
        service.secrets.append(number)
        await create(
            service,
            f"/v1/members/{member_id}/card",
            {"card_number": number, "issued_on": joined_on.isoformat()},
        )
        out["card_number"] = number
    return out


async def stored_event_count(service: Service) -> int:
    async with service.runtime.engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(events)) or 0)


async def published(service: Service) -> list[Received]:
    """Everything on the service's topic, once every event stored so far has arrived."""
    return await read_topic(service.kafka, service.topic, expect=await stored_event_count(service))


def envelopes(messages: list[Received], key: str) -> list[dict[str, Any]]:
    """Decoded envelopes with this message key, in topic order (one key = one partition)."""
    chosen = [m for m in messages if m.key == key.encode()]
    return [json.loads(m.value) for m in sorted(chosen, key=lambda m: m.offset)]


def problem_fields(body: dict[str, Any]) -> set[str]:
    return {e["field"] for e in body.get("errors", [])}


def new_id() -> str:
    return str(uuid.uuid4())


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


def on_paper(body: dict[str, Any]) -> dict[str, Any]:
    """An enrolment body as a paper enrolment paid on its start day: how a test records cover
    that starts before the service's today (only a supervisor may send it, see SUPERVISOR)."""
    return {
        **body,
        "paper": {"receipt_reference": f"R-{uuid.uuid4().hex[:12]}", "paid_on": body["starts_on"]},
    }


#: ``create(..., **BY_SUPERVISOR)``: the supervisor's token instead of staff's.
BY_SUPERVISOR = {"Authorization": SUPERVISOR["Authorization"]}


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


async def assert_nothing_personal_left(service: Service, grassroots: str) -> None:
    """Run last in each test module: nothing personal the module's service was sent (national
    IDs, phones, card numbers, health details) is on Kafka, in the event store or in the logs."""
    await new_member(service, grassroots, card=True)  # so this stands on its own too
    assert len(service.secrets) >= 3
    messages = await published(service)
    assert len({json.loads(m.value)["event_id"] for m in messages}) >= await stored_event_count(service)
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
