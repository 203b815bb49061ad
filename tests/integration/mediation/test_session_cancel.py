"""Cancelling one mediation session: the room's time is freed for another session, the second
cancel and a held session are 409, the wrong caller 403, a replayed Idempotency-Key one event.

On the real database and broker (the module's own mediation service, see conftest)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.integration.mediation.conftest import Mediation

pytestmark = pytest.mark.integration


def _slot(day: int, start: str = "10:00", end: str = "12:00", mediator: str = "mediator-1") -> dict[str, Any]:
    return {
        "starts_at": f"2026-09-{day:02d}T{start}:00+08:00",
        "ends_at": f"2026-09-{day:02d}T{end}:00+08:00",
        "mediator": mediator,
    }


async def _book(mediation: Mediation, case_id: str, body: dict[str, Any]) -> str:
    r = await mediation.post(f"/cases/{case_id}/sessions", body, "street")
    assert r.status_code == 201, r.text
    session_id: str = r.json()["session_id"]
    return session_id


async def test_a_cancelled_session_frees_the_room_for_another_and_a_second_cancel_is_409(
    mediation: Mediation,
) -> None:
    first, second = await mediation.new_case(), await mediation.new_case()
    session = await _book(mediation, first["case_id"], _slot(21))
    taken = await mediation.post(
        f"/cases/{second['case_id']}/sessions", _slot(21, "11:00", "13:00"), "street"
    )
    assert taken.status_code == 409 and taken.json()["code"] == "room_taken"

    cancel = f"/cases/{first['case_id']}/sessions/{session}/cancel"
    r = await mediation.post(cancel, {"reason": "雇主代理人出差"}, "street")
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled" and r.json()["session_id"] == session

    # The very hours are free now: the other case books them.
    await _book(mediation, second["case_id"], _slot(21, "11:00", "13:00", "mediator-2"))

    again = await mediation.post(cancel, None, "street")
    assert again.status_code == 409 and again.json()["code"] == "session_cancelled"

    detail = (await mediation.get(f"/cases/{first['case_id']}", "street")).json()
    [shown] = detail["sessions"]
    assert shown["status"] == "cancelled" and shown["cancelled_on"] == mediation.clock.today.isoformat()
    assert "SessionCancelled" in [h["event_type"] for h in detail["history"]]

    cancelled = [
        e for e in await mediation.stored_events("SessionCancelled") if e["data"]["session_id"] == session
    ]
    released = [
        e for e in await mediation.stored_events("RoomReleased") if e["data"]["session_id"] == session
    ]
    assert len(cancelled) == 1 and len(released) == 1
    assert released[0]["data"]["cause"] == "session_cancelled"
    # The reason stays in the service: neither event carries it, and Kafka gets what is stored.
    assert "雇主代理人出差" not in str(cancelled) + str(released)
    on_kafka = [
        json.loads(m.value)
        for m in await mediation.published()
        if m.headers.get("event_type") == b"SessionCancelled"
    ]
    assert session in [m["data"]["session_id"] for m in on_kafka]
    assert all("雇主代理人出差" not in json.dumps(m, ensure_ascii=False) for m in on_kafka)


async def test_unknown_session_or_case_is_404_and_a_held_session_is_409(mediation: Mediation) -> None:
    case = await mediation.new_case()
    unknown = await mediation.post(
        f"/cases/{case['case_id']}/sessions/00000000-0000-4000-8000-000000000000/cancel", None, "street"
    )
    assert unknown.status_code == 404, unknown.text
    session = await _book(mediation, case["case_id"], _slot(22))
    no_case = await mediation.post(
        f"/cases/00000000-0000-4000-8000-000000000001/sessions/{session}/cancel", None
    )
    assert no_case.status_code == 404, no_case.text

    minutes = await mediation.post(
        f"/cases/{case['case_id']}/sessions/{session}/minutes", {"minutes": "双方陈述"}, "mediator-1"
    )
    assert minutes.status_code == 201, minutes.text
    held = await mediation.post(f"/cases/{case['case_id']}/sessions/{session}/cancel", None, "street")
    assert held.status_code == 409 and held.json()["code"] == "session_held"

    # A session on a day already past is held too (the clock moves on, then back).
    later = await _book(mediation, case["case_id"], _slot(23))
    mediation.clock.today = mediation.clock.today.replace(day=24)
    try:
        past = await mediation.post(f"/cases/{case['case_id']}/sessions/{later}/cancel", None, "street")
    finally:
        mediation.clock.today = mediation.clock.today.replace(day=16)
    assert past.status_code == 409 and past.json()["code"] == "session_held"


async def test_only_staff_of_the_handling_union_may_cancel(mediation: Mediation) -> None:
    case = await mediation.new_case()
    session = await _book(mediation, case["case_id"], _slot(25))
    path = f"/cases/{case['case_id']}/sessions/{session}/cancel"
    # Integrators may not write (403); to staff of unions that never handled the case it does
    # not exist (404, as on reads).
    for who, status in (("integrator", 403), ("other-street", 404), ("district", 404)):
        r = await mediation.post(path, None, who)
        assert r.status_code == status, (who, r.text)
    assert all(e["data"]["session_id"] != session for e in await mediation.stored_events("SessionCancelled"))
    assert (await mediation.post(path, None, "mediator-2")).status_code == 200  # staff of the station


async def test_a_replayed_idempotency_key_cancels_once(mediation: Mediation) -> None:
    case = await mediation.new_case()
    session = await _book(mediation, case["case_id"], _slot(28))
    path = f"/cases/{case['case_id']}/sessions/{session}/cancel"
    key = {"Idempotency-Key": f"cancel-{session}"}
    first = await mediation.post(path, None, "street", **key)
    replay = await mediation.post(path, None, "street", **key)
    assert first.status_code == replay.status_code == 200, replay.text
    assert first.json() == replay.json()
    assert (
        len(
            [
                e
                for e in await mediation.stored_events("SessionCancelled")
                if e["data"]["session_id"] == session
            ]
        )
        == 1
    )
    assert (
        len([e for e in await mediation.stored_events("RoomReleased") if e["data"]["session_id"] == session])
        == 1
    )
