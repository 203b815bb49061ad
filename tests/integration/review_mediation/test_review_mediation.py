"""Review: attacks on mediation (concurrency, access, hostile input)."""

from __future__ import annotations

import asyncio

import pytest
import sqlalchemy as sa

from shared.audit import access_audit
from tests.integration.mediation.conftest import Mediation

pytestmark = pytest.mark.integration

DAY = "2026-10-12"


def _problem(r, field: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert field in r.text, r.text


async def test_concurrent_back_to_back_bookings_in_mixed_offsets_all_succeed(mediation: Mediation) -> None:
    """Six non-overlapping sessions (touching at their ends, spelt +08:00 and Z alternately) booked at
    once in one room: none overlaps, so every one must be 201, never room_taken or a lost retry."""
    cases = [await mediation.new_case() for _ in range(6)]
    bodies = []
    for i in range(6):
        if i % 2 == 0:
            s, e = f"{DAY}T{8 + i:02d}:00:00+08:00", f"{DAY}T{9 + i:02d}:00:00+08:00"
        else:
            s, e = f"{DAY}T{i:02d}:00:00Z", f"{DAY}T{1 + i:02d}:00:00Z"  # (8+i):00 Beijing
        bodies.append({"starts_at": s, "ends_at": e, "mediator": "mediator-1"})
    answers = await asyncio.gather(
        *(mediation.post(f"/cases/{c['case_id']}/sessions", b) for c, b in zip(cases, bodies, strict=True))
    )
    assert [a.status_code for a in answers] == [201] * 6, [a.text for a in answers]


async def test_overlap_spelt_in_another_offset_under_concurrency_books_one(mediation: Mediation) -> None:
    a, b = await mediation.new_case(), await mediation.new_case()
    answers = await asyncio.gather(
        mediation.post(
            f"/cases/{a['case_id']}/sessions",
            {
                "starts_at": "2026-10-13T09:00:00+08:00",
                "ends_at": "2026-10-13T10:00:00+08:00",
                "mediator": "m",
            },
        ),
        mediation.post(
            f"/cases/{b['case_id']}/sessions",
            {"starts_at": "2026-10-13T01:59:00Z", "ends_at": "2026-10-13T03:00:00Z", "mediator": "m"},
        ),
    )
    assert sorted(x.status_code for x in answers) == [201, 409], [x.text for x in answers]


async def test_a_withdrawn_cases_session_frees_the_room(mediation: Mediation) -> None:
    """A withdrawn case will hold no session: its booking must not keep the room taken forever."""
    a, b = await mediation.new_case(), await mediation.new_case()
    slot = {"starts_at": "2026-10-14T09:00:00+08:00", "ends_at": "2026-10-14T10:00:00+08:00", "mediator": "m"}
    assert (await mediation.post(f"/cases/{a['case_id']}/sessions", slot)).status_code == 201
    assert (await mediation.post(f"/cases/{a['case_id']}/withdraw", {"reason": "和解"})).status_code == 200
    again = await mediation.post(f"/cases/{b['case_id']}/sessions", slot)
    assert again.status_code == 201, again.text
    released = [e for e in await mediation.stored_events() if e["event_type"] == "RoomReleased"]
    assert [e["data"]["case_id"] for e in released] == [a["case_id"]]


async def test_concurrent_escalate_and_agreement_decide_one_outcome(mediation: Mediation) -> None:
    for _ in range(5):
        case = await mediation.new_case()
        cid = case["case_id"]
        up, agreed = await asyncio.gather(
            mediation.post(f"/cases/{cid}/escalate", {"reason": "未果"}),
            mediation.post(
                f"/cases/{cid}/agreement", {"terms": "付款", "amount": "100.00", "due_on": "2026-10-30"}
            ),
        )
        assert up.status_code < 500 and agreed.status_code < 500, (up.text, agreed.text)
        types = [e["event_type"] for e in await mediation.stored_events() if e["stream_id"] == cid]
        assert not ("CaseEscalated" in types and "AgreementReached" in types) or (
            up.status_code == 200 and agreed.status_code == 200
        ), (types, up.text, agreed.text)
        final = (await mediation.get(f"/cases/{cid}")).json()
        assert final["status"] in {"escalated", "agreed"}


_HOURS = iter(range(8, 20))


async def _session_with_minutes(mediation: Mediation) -> tuple[str, str]:
    case = await mediation.new_case(who="street")
    h = next(_HOURS)
    s = await mediation.post(
        f"/cases/{case['case_id']}/sessions",
        {
            "starts_at": f"2026-10-15T{h:02d}:00:00+08:00",
            "ends_at": f"2026-10-15T{h:02d}:30:00+08:00",
            "mediator": "mediator-1",
        },
        "street",
    )
    assert s.status_code == 201, s.text
    sid = s.json()["session_id"]
    path = f"/cases/{case['case_id']}/sessions/{sid}/minutes"
    assert (await mediation.post(path, {"minutes": "秘密纪要"}, "mediator-1")).status_code == 201
    return path, sid


async def _trail(mediation: Mediation, sid: str) -> list[tuple[str, bool]]:
    async with mediation.runtime.engine.connect() as conn:
        rows = (
            (await conn.execute(sa.select(access_audit).where(access_audit.c.resource_id == sid)))
            .mappings()
            .all()
        )
    return [(r["subject"], r["allowed"]) for r in rows]


async def test_an_integrators_refused_read_of_minutes_is_audited(mediation: Mediation) -> None:
    path, sid = await _session_with_minutes(mediation)
    r = await mediation.get(path, "integrator")
    assert r.status_code == 403
    assert any(not allowed for _, allowed in await _trail(mediation, sid)), await _trail(mediation, sid)


async def test_another_stations_refused_read_of_minutes_is_audited(mediation: Mediation) -> None:
    path, sid = await _session_with_minutes(mediation)
    r = await mediation.get(path, "other-street")
    assert r.status_code in (403, 404) and "秘密纪要" not in r.text
    assert any(not allowed for _, allowed in await _trail(mediation, sid)), await _trail(mediation, sid)


async def test_another_station_sees_neither_the_case_nor_its_parties(mediation: Mediation) -> None:
    case = await mediation.new_case(who="street", worker={"full_name": "孙八", "phone": "13800001111"})
    cid = case["case_id"]
    for who in ("other-street", "district"):
        r = await mediation.get(f"/cases/{cid}", who)
        assert r.status_code == 404 and "孙八" not in r.text and "13800001111" not in r.text
        listed = await mediation.get(f"/cases?station_id={mediation.tree.street}", who)
        assert cid not in listed.text and "孙八" not in listed.text
        q = await mediation.get(f"/queues/{mediation.tree.street}", who)
        assert q.status_code in (403, 404) or cid not in q.text
        act = await mediation.post(f"/cases/{cid}/withdraw", {"reason": "x"}, who)
        assert act.status_code in (403, 404), act.text
    # Receiving at another station with a station-bound token is refused.
    body = {
        "union_id": str(mediation.tree.street),
        "worker": {"full_name": "x"},
        "employer": {"name": "e"},
        "category": "wages",
        "claim_text": "c",
        "learned_on": "2026-08-31",
    }
    r = await mediation.post("/cases", body, "other-street")
    assert r.status_code == 403, r.text


BASE = {
    "worker": {"full_name": "周九", "phone": "13911113333"},
    "employer": {"name": "某公司"},
    "category": "wages",
    "claim_text": "欠薪",
    "amount": "10.00",
    "learned_on": "2026-08-31",
}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"learned_on": "2026-02-30"}, "learned_on"),
        ({"learned_on": "2026-08-31T00:00:00+08:00"}, "learned_on"),
        ({"amount": "1.234"}, "amount"),
        ({"amount": 1.234}, "amount"),
        ({"amount": "-5"}, "amount"),
        ({"amount": "0"}, "amount"),
        ({"amount": True}, "amount"),
        ({"amount": "NaN"}, "amount"),
        ({"amount": "Infinity"}, "amount"),
        ({"amount": "1e3"}, "amount"),
        ({"amount": 10**30}, "amount"),
        ({"claim_text": "a\x00b"}, "claim_text"),
        ({"claim_text": "x" * 5000}, "claim_text"),
        ({"claim_text": 5}, "claim_text"),
        ({"category": "nonsense"}, "category"),
        ({"surprise": 1}, "surprise"),
        ({"worker": {"full_name": "周九", "phone": "139\x00"}}, "worker.phone"),
        ({"worker": {"full_name": "周九", "phone": "1" * 41}}, "worker.phone"),
        ({"worker": "周九"}, "worker"),
        ({"employer": {"name": "x", "credit_code": "bad"}}, "employer.credit_code"),
        ({"received_on": "2026-13-01"}, "received_on"),
        ({"learned_on": "2099-01-01"}, "learned_on"),
    ],
)
async def test_hostile_case_bodies_are_4xx_naming_the_field_and_write_nothing(
    mediation: Mediation, change: dict, field: str
) -> None:
    before = len(await mediation.stored_events())
    body = {"union_id": str(mediation.tree.street), **BASE, **change}
    r = await mediation.post("/cases", body)
    _problem(r, field)
    assert "13911113333" not in r.text and "周九" not in r.text
    assert len(await mediation.stored_events()) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (
            {"starts_at": "2026-10-16T09:00:00", "ends_at": "2026-10-16T10:00:00+08:00", "mediator": "m"},
            "starts_at",
        ),
        (
            {
                "starts_at": "2026-02-30T09:00:00+08:00",
                "ends_at": "2026-10-16T10:00:00+08:00",
                "mediator": "m",
            },
            "starts_at",
        ),
        ({"starts_at": 1700000000, "ends_at": "2026-10-16T10:00:00+08:00", "mediator": "m"}, "starts_at"),
        (
            {
                "starts_at": "2026-10-16T10:00:00+08:00",
                "ends_at": "2026-10-16T09:00:00+08:00",
                "mediator": "m",
            },
            "ends_at",
        ),
        (
            {
                "starts_at": "2026-10-16T10:00:00+08:00",
                "ends_at": "2026-10-16T10:00:00+08:00",
                "mediator": "m",
            },
            "ends_at",
        ),
        (
            {
                "starts_at": "2026-10-16T09:00:00+08:00",
                "ends_at": "2026-10-16T10:00:00+08:00",
                "mediator": "m\x00",
            },
            "mediator",
        ),
        (
            {
                "starts_at": "2026-10-16T09:00:00+08:00",
                "ends_at": "2026-10-16T10:00:00+08:00",
                "mediator": "m",
                "parties_present": ["Worker!"],
            },
            "parties_present",
        ),
        (
            {
                "starts_at": "9999-12-31T23:00:00-12:00",
                "ends_at": "9999-12-31T23:30:00-12:00",
                "mediator": "m",
            },
            "starts_at",
        ),
    ],
)
async def test_hostile_session_bodies_are_4xx_naming_the_field(
    mediation: Mediation, body: dict, field: str
) -> None:
    case = await mediation.new_case()
    before = len(await mediation.stored_events())
    r = await mediation.post(f"/cases/{case['case_id']}/sessions", body)
    _problem(r, field)
    assert len(await mediation.stored_events()) == before


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"terms": "t", "amount": "1.001", "due_on": "2026-10-30"}, "amount"),
        ({"terms": "t", "amount": "1.00", "due_on": "2026-02-30"}, "due_on"),
        ({"terms": "t\x00", "amount": "1.00", "due_on": "2026-10-30"}, "terms"),
        ({"terms": "t", "amount": "1.00", "due_on": "2026-10-30", "extra": 1}, "extra"),
    ],
)
async def test_hostile_agreements_are_4xx_naming_the_field(
    mediation: Mediation, body: dict, field: str
) -> None:
    case = await mediation.new_case()
    r = await mediation.post(f"/cases/{case['case_id']}/agreement", body)
    _problem(r, field)
