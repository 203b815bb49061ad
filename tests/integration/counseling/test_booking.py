"""One booking per slot under concurrency; cancelling frees the slot; members come from
membership.events; reminders, no-show counts and anonymous statistics."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
import sqlalchemy as sa

from services.counseling import tables as t
from tests.integration.counseling.conftest import (
    COUNSELOR_1,
    COUNSELOR_2,
    INTEGRATOR,
    STAFF,
    TODAY,
    CounselingUnderTest,
    at,
)

pytestmark = pytest.mark.integration


async def test_ten_concurrent_bookings_of_one_slot_make_one_appointment(
    counseling: CounselingUnderTest,
) -> None:
    slot = await counseling.slot(await counseling.counselor())
    bodies = [
        {"slot_id": slot, "resident": {"full_name": f"Resident {i}", "phone": f"1390000000{i}"}}
        for i in range(10)
    ]
    responses = await asyncio.gather(
        *(counseling.http.post("/v1/appointments", headers=STAFF, json=b) for b in bodies)
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] + [409] * 9, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"slot_taken"}
    async with counseling.runtime.engine.connect() as conn:
        live = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(t.appointments)
            .where(t.appointments.c.slot_id == uuid.UUID(slot))
        )
        booked_events = await conn.scalar(
            sa.text("SELECT count(*) FROM events WHERE event_type = 'AppointmentBooked'")
        )
    assert live == 1 and booked_events == 1


async def test_ten_concurrent_bookings_of_one_slot_by_one_member(counseling: CounselingUnderTest) -> None:
    slot = await counseling.slot(await counseling.counselor())
    member = str(await counseling.member())
    responses = await asyncio.gather(
        *(
            counseling.http.post(
                "/v1/appointments", headers=STAFF, json={"slot_id": slot, "member_id": member}
            )
            for _ in range(10)
        )
    )
    assert sorted(r.status_code for r in responses) == [201] + [409] * 9
    assert {r.json()["code"] for r in responses if r.status_code == 409} == {"slot_taken"}


async def test_cancelling_frees_the_slot_and_client_refs_are_stable(counseling: CounselingUnderTest) -> None:
    counselor = await counseling.counselor()
    slot = await counseling.slot(counselor)
    first = await counseling.book(slot, resident={"full_name": "Zhao Min", "phone": "139 1111 2222"})
    taken = await counseling.http.post(
        "/v1/appointments", headers=STAFF, json={"slot_id": slot, "member_id": str(uuid.uuid4())}
    )
    assert taken.status_code == 409  # member not known, or slot taken: never a second booking
    free = await counseling.ok("GET", f"/v1/counselors/{counselor}/slots?free=true", INTEGRATOR)
    assert slot not in [s["slot_id"] for s in free["items"]]

    cancelled = await counseling.ok(
        "POST", f"/v1/appointments/{first['appointment_id']}/cancel", STAFF, {"reason": "her son is ill"}
    )
    assert cancelled["status"] == "cancelled"
    again = await counseling.book(slot, resident={"full_name": "Zhao Min", "phone": "+86 13911112222"})
    assert again["client_ref"] == first["client_ref"] and again["appointment_id"] != first["appointment_id"]
    detail = await counseling.ok("GET", f"/v1/appointments/{first['appointment_id']}", INTEGRATOR)
    assert detail["status"] == "cancelled" and detail["cancelled_by"] == "client"

    by_counselor = await counseling.ok(
        "POST", f"/v1/appointments/{again['appointment_id']}/cancel", COUNSELOR_1
    )
    assert by_counselor["status"] == "cancelled"
    detail = await counseling.ok("GET", f"/v1/appointments/{again['appointment_id']}", STAFF)
    assert detail["cancelled_by"] == "counselor"


async def test_another_counsellor_neither_cancels_nor_publishes_for_someone_else(
    counseling: CounselingUnderTest,
) -> None:
    counselor = await counseling.counselor()
    appointment = (await counseling.book(await counseling.slot(counselor)))["appointment_id"]
    refused = await counseling.http.post(f"/v1/appointments/{appointment}/cancel", headers=COUNSELOR_2)
    assert refused.status_code == 403
    body = {"starts_at": at(TODAY, 20), "ends_at": at(TODAY, 21)}
    assert (
        await counseling.http.post(f"/v1/counselors/{counselor}/slots", headers=COUNSELOR_2, json=body)
    ).status_code == 403
    own = await counseling.http.post(f"/v1/counselors/{counselor}/slots", headers=COUNSELOR_1, json=body)
    assert own.status_code == 201
    assert (await counseling.http.post("/v1/appointments", headers=INTEGRATOR, json={})).status_code == 403


async def test_overlapping_slots_are_refused_even_when_published_at_once(
    counseling: CounselingUnderTest,
) -> None:
    counselor = await counseling.counselor()
    url = f"/v1/counselors/{counselor}/slots"
    bodies = [{"starts_at": at(TODAY, 9, 10 * i), "ends_at": at(TODAY, 10, 10 * i)} for i in range(5)]
    responses = await asyncio.gather(*(counseling.http.post(url, headers=STAFF, json=b) for b in bodies))
    created = [r for r in responses if r.status_code == 201]
    assert len(created) == 1, [r.text for r in responses]
    assert {r.json()["code"] for r in responses if r.status_code == 409} <= {
        "slot_overlaps",
        "concurrent_update",
    }


async def test_members_are_known_from_membership_events(counseling: CounselingUnderTest) -> None:
    slot = await counseling.slot(await counseling.counselor())
    member = uuid.uuid4()
    unknown = await counseling.http.post(
        "/v1/appointments", headers=STAFF, json={"slot_id": slot, "member_id": str(member)}
    )
    assert unknown.status_code == 409 and unknown.json()["code"] == "member_not_known"
    await counseling.member(member)
    booked = await counseling.book(slot, member_id=str(member))
    assert len(booked["client_ref"]) == 64 and str(member) not in booked["client_ref"]


@pytest.mark.parametrize(
    "body",
    [
        {"slot_id": "not-a-uuid", "member_id": str(uuid.uuid4())},
        {"slot_id": str(uuid.uuid4())},
        {
            "slot_id": str(uuid.uuid4()),
            "member_id": str(uuid.uuid4()),
            "resident": {"full_name": "A", "phone": "1"},
        },
        {"slot_id": str(uuid.uuid4()), "resident": {"full_name": "Qian Hao"}},
    ],
)
async def test_malformed_bookings_are_422(counseling: CounselingUnderTest, body: dict[str, object]) -> None:
    response = await counseling.http.post("/v1/appointments", headers=STAFF, json=body)
    assert response.status_code == 422 and "Qian Hao" not in response.text


async def test_bad_phone_is_422_without_echo(counseling: CounselingUnderTest) -> None:
    slot = await counseling.slot(await counseling.counselor())
    body = {"slot_id": slot, "resident": {"full_name": "Qian Hao", "phone": "call-me-13x"}}
    response = await counseling.http.post("/v1/appointments", headers=STAFF, json=body)
    assert response.status_code == 422 and "call-me" not in response.text and "Qian" not in response.text
    assert response.json()["errors"][0]["field"] == "resident.phone"


async def test_reminders_no_shows_and_statistics(counseling: CounselingUnderTest) -> None:
    counselor = await counseling.counselor()
    tomorrow = TODAY + timedelta(days=1)
    resident = {"resident": {"full_name": "Zhou Jie", "phone": "13512345678"}}
    member = {"member_id": str(await counseling.member())}
    # today: the resident misses one, comes to another; the member comes once
    missed = await counseling.book(await counseling.slot(counselor), **resident)
    came = await counseling.book(await counseling.slot(counselor), **resident)
    member_session = await counseling.book(await counseling.slot(counselor), **member)
    # tomorrow: one of each, to be reminded of
    await counseling.book(await counseling.slot(counselor, tomorrow), **resident)
    await counseling.book(await counseling.slot(counselor, tomorrow), **member)

    reminders = await counseling.ok("GET", "/v1/reminders", STAFF)
    assert reminders["on"] == tomorrow.isoformat() and len(reminders["items"]) == 2
    contacts = [i["resident"] for i in reminders["items"] if i["client_kind"] == "resident"]
    assert contacts == [{"full_name": "Zhou Jie", "phone": "13512345678"}]
    assert (await counseling.http.get("/v1/reminders", headers=INTEGRATOR)).status_code == 403

    early = await counseling.http.post(
        f"/v1/appointments/{reminders['items'][0]['appointment_id']}/no-show", headers=STAFF
    )
    assert early.status_code == 409 and early.json()["code"] == "session_not_started"
    await counseling.ok(
        "POST", f"/v1/appointments/{missed['appointment_id']}/no-show", COUNSELOR_1, {"reason": "no answer"}
    )
    for session in (came, member_session):
        await counseling.ok(
            "POST", f"/v1/appointments/{session['appointment_id']}/complete", COUNSELOR_1, {"notes": "n"}
        )

    counts = await counseling.ok("GET", "/v1/no-shows", STAFF)
    assert counts["items"] == [
        {"client_ref": missed["client_ref"], "client_kind": "resident", "no_shows": 1, "appointments": 3}
    ]
    one = await counseling.ok(
        "GET", f"/v1/no-shows?client_ref={member_session['client_ref']}&min_count=0", STAFF
    )
    assert one["items"][0]["no_shows"] == 0

    stats = await counseling.ok("GET", "/v1/statistics", INTEGRATOR)
    assert stats["months"] == [
        {"month": "2026-05", "sessions": 2, "no_shows": 1, "cancelled": 0, "booked": 2}
    ]
    assert stats["no_show_rate"] == round(1 / 3, 4)
    assert stats["clients"] == {"members": 1, "residents": 1, "resident_share": 0.5}
    assert "client_ref" not in str(stats) and "Zhou" not in str(stats)


async def test_deactivated_counsellors_take_no_bookings(counseling: CounselingUnderTest) -> None:
    counselor = await counseling.counselor()
    slot = await counseling.slot(counselor)
    await counseling.ok("POST", f"/v1/counselors/{counselor}/deactivate", STAFF)
    response = await counseling.http.post(
        "/v1/appointments",
        headers=STAFF,
        json={"slot_id": slot, "resident": {"full_name": "X Y", "phone": "13800000000"}},
    )
    assert response.status_code == 409 and response.json()["code"] == "counselor_inactive"
    # the subject is free again for a new counsellor record
    assert await counseling.counselor(name="Dr. Wang Fang (2027)")
    dup = await counseling.http.post(
        "/v1/counselors",
        headers=STAFF,
        json={"display_name": "x", "provider": "volunteer", "subject": "counselor-1"},
    )
    assert dup.status_code == 409 and dup.json()["code"] == "subject_taken"
