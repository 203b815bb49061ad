"""The first and last dates a ``Day`` accepts, as query bounds (found by the OpenAPI fuzz).

``/v1/statistics?from=0001-01-01`` answered 500: midnight of that day in Beijing is year 0 in UTC,
which no datetime holds, so passing the bound to PostgreSQL failed. Both edges are valid input
and must answer 200, with the same rows an unbounded query gives.
"""

from __future__ import annotations

import pytest

from tests.integration.counseling.conftest import STAFF, TODAY, CounselingUnderTest

pytestmark = pytest.mark.integration


async def test_statistics_from_the_first_to_the_last_day_count_every_session(
    counseling: CounselingUnderTest,
) -> None:
    await counseling.book(await counseling.slot(await counseling.counselor()))
    unbounded = await counseling.ok("GET", "/v1/statistics", STAFF)
    assert [m["booked"] for m in unbounded["months"]] == [1], unbounded
    for query in ("from=0001-01-01", "to=9999-12-31", "from=0001-01-01&to=9999-12-31"):
        assert await counseling.ok("GET", f"/v1/statistics?{query}", STAFF) == unbounded, query
    for query in ("to=0001-01-01", "from=9999-12-31"):
        empty = await counseling.ok("GET", f"/v1/statistics?{query}", STAFF)
        assert empty["months"] == [], (query, empty)


async def test_appointments_and_reminders_on_the_first_and_last_day_answer_200(
    counseling: CounselingUnderTest,
) -> None:
    booked = await counseling.book(await counseling.slot(await counseling.counselor()))
    on_today = await counseling.ok("GET", f"/v1/appointments?on={TODAY}", STAFF)
    assert booked["appointment_id"] in str(on_today)
    for day in ("0001-01-01", "9999-12-31"):
        for path in (f"/v1/appointments?on={day}", f"/v1/reminders?on={day}"):
            r = await counseling.http.get(path, headers=STAFF)
            assert r.status_code == 200, (path, r.text)
            assert booked["appointment_id"] not in r.text, path


async def test_a_slot_late_on_9999_12_31_utc_is_published_booked_and_cancelled_without_a_500(
    counseling: CounselingUnderTest,
) -> None:
    """Its Beijing date would be in the year 10000 (it was an OverflowError, a 500, in every rule
    that compares a slot's day with today); now it is simply the farthest day there is."""
    counselor = await counseling.counselor(subject=f"far-{TODAY}", name="Dr. Far")
    body = {"starts_at": "9999-12-31T20:00:00Z", "ends_at": "9999-12-31T20:50:00Z"}
    r = await counseling.http.post(f"/v1/counselors/{counselor}/slots", headers=STAFF, json=body)
    assert r.status_code == 201, r.text
    booked = await counseling.book(r.json()["slot_id"])
    cancel = await counseling.http.post(
        f"/v1/appointments/{booked['appointment_id']}/cancel", headers=STAFF, json={"reason": "moved"}
    )
    assert cancel.status_code < 500, cancel.text
