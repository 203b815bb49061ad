"""Every command alike: concurrency, idempotency, auth, the event contract on Kafka, operations
(on the real PostgreSQL and Kafka)."""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from services.membership.projections import rebuild_read_models
from services.membership.tables import metadata as membership_metadata
from shared.audit import audit_metadata
from shared.envelope import HEADER_NAMES, EventEnvelope
from shared.tables import consumer_metadata, core_metadata
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import (
    BY_SUPERVISOR,
    ENVELOPE_FIELDS,
    INTEGRATOR,
    STAFF,
    SUPERVISOR,
    assert_nothing_personal_left,
    assert_problem,
    card_number,
    create,
    envelopes,
    national_id,
    new_member,
    on_paper,
    post,
    published,
    stored_event_count,
)

pytestmark = pytest.mark.integration


# --- concurrency ------------------------------------------------------------------------------


async def test_concurrent_commands_never_double_book_nor_fail(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"], gender="female", card=True)
    path = f"/v1/members/{m['member_id']}/enrollments"
    same = {"plan_code": "female_special_disease", "shares": 1, "starts_on": "2016-01-01"}
    answers = await asyncio.gather(*[post(service, path, on_paper(same), SUPERVISOR) for _ in range(6)])
    assert sorted(r.status_code for r in answers) == [201, 409, 409, 409, 409, 409]

    years = [
        {"plan_code": "critical_illness", "shares": 1, "starts_on": f"{y}-01-01"} for y in range(2011, 2017)
    ]
    answers = await asyncio.gather(*[post(service, path, on_paper(body), SUPERVISOR) for body in years])
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
        on_paper({"plan_code": "accident_injury", "shares": 1, "starts_on": "2016-01-01"}),
        **BY_SUPERVISOR,
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


# --- operations -------------------------------------------------------------------------------


async def test_read_models_rebuild_to_the_same_answers(service: Service, tree: dict[str, str]) -> None:
    m = await new_member(service, tree["grassroots"], card=True)
    await create(
        service,
        f"/v1/members/{m['member_id']}/enrollments",
        on_paper({"plan_code": "accident_injury", "shares": 3, "starts_on": "2016-01-01"}),
        **BY_SUPERVISOR,
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
        metadata = [core_metadata, consumer_metadata, membership_metadata, audit_metadata]
        return list(compare_metadata(context, metadata))  # type: ignore[arg-type]

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
    body = {"plan_code": "accident_injury", "shares": 1, "starts_on": "2016-08-10"}  # today
    headers = {**STAFF, "Idempotency-Key": str(uuid.uuid4())}
    answers = await asyncio.gather(
        *(post(service, f"/v1/members/{member['member_id']}/enrollments", body, headers) for _ in range(4))
    )
    assert [a.status_code for a in answers] == [201] * 4
    assert len({a.json()["enrollment_id"] for a in answers}) == 1


# --- last: nothing personal ever left the service ---------------------------------------------


async def test_no_personal_data_on_kafka_in_events_or_logs(service: Service, tree: dict[str, str]) -> None:
    await assert_nothing_personal_left(service, tree["grassroots"])
