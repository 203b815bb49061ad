"""Review: attacks on counseling (concurrency, access, hostile input)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

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


def _problem(r: Any, field: str) -> None:
    assert 400 <= r.status_code < 500, (r.status_code, r.text)
    assert r.headers["content-type"].startswith("application/problem+json"), r.headers
    assert field in r.text, r.text


async def test_six_non_overlapping_slots_of_one_counsellor_published_at_once_all_succeed(
    counseling: CounselingUnderTest,
) -> None:
    cid = await counseling.counselor()
    answers = await asyncio.gather(
        *(
            counseling.http.post(
                f"/v1/counselors/{cid}/slots",
                json={"starts_at": at(TODAY, 8 + i), "ends_at": at(TODAY, 8 + i, 50)},
                headers=STAFF,
            )
            for i in range(6)
        )
    )
    assert [r.status_code for r in answers] == [201] * 6, [r.text for r in answers]


async def test_reminders_with_names_and_phones_are_refused_to_counsellors_and_integrators(
    counseling: CounselingUnderTest,
) -> None:
    cid = await counseling.counselor()
    await counseling.book(
        await counseling.slot(cid), resident={"full_name": "Ma Lan", "phone": "13655556666"}
    )
    for headers in (COUNSELOR_1, COUNSELOR_2, INTEGRATOR):
        for path in (f"/v1/reminders?on={TODAY}", "/v1/no-shows", "/v1/audit"):
            r = await counseling.http.get(path, headers=headers)
            assert r.status_code == 403, (path, headers, r.text)
            assert "Ma Lan" not in r.text and "13655556666" not in r.text
    for path in ("/v1/appointments", "/v1/statistics"):
        r = await counseling.http.get(path, headers=INTEGRATOR)
        assert "Ma Lan" not in r.text and "13655556666" not in r.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"starts_at": "2026-05-11T09:00:00", "ends_at": "2026-05-11T09:50:00+08:00"}, "starts_at"),
        ({"starts_at": "2026-02-30T09:00:00+08:00", "ends_at": "2026-05-11T09:50:00+08:00"}, "starts_at"),
        ({"starts_at": "9999-12-31T22:00:00-12:00", "ends_at": "9999-12-31T23:00:00-12:00"}, "starts_at"),
        ({"starts_at": 1, "ends_at": 2}, "starts_at"),
        ({"starts_at": "2026-05-11T09:00:00+08:00", "ends_at": "2026-05-11T09:50:00+08:00", "x": 1}, "x"),
    ],
)
async def test_hostile_slots_are_4xx_naming_the_field(
    counseling: CounselingUnderTest, body: dict[str, Any], field: str
) -> None:
    cid = await counseling.counselor()
    r = await counseling.http.post(f"/v1/counselors/{cid}/slots", json=body, headers=STAFF)
    _problem(r, field)


async def test_notes_with_nul_or_too_long_are_422_without_echo(counseling: CounselingUnderTest) -> None:
    cid = await counseling.counselor()
    appt = (await counseling.book(await counseling.slot(cid)))["appointment_id"]
    for notes in ("secret\x00notes", "s" * 20_001, 5, ["a"]):
        r = await counseling.http.post(
            f"/v1/appointments/{appt}/complete", json={"notes": notes}, headers=COUNSELOR_1
        )
        _problem(r, "notes")
        assert "secret" not in r.text
    r = await counseling.http.get(f"/v1/appointments/{appt}", headers=STAFF)
    assert r.json()["status"] == "booked"
