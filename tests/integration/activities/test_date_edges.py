"""``starts_from`` at the first and last dates a ``Day`` accepts.

``/v1/activities?starts_from=0001-01-01`` answered 500: midnight of that day in Beijing is year 0
in UTC, which no datetime holds (the same defect the fuzz found in counseling's statistics).
"""

from __future__ import annotations

import pytest

from tests.integration.activities.conftest import ActivitiesUnderTest

pytestmark = pytest.mark.integration


async def test_starts_from_the_first_day_lists_everything_and_from_the_last_day_nothing(
    activities: ActivitiesUnderTest,
) -> None:
    activity_id = await activities.schedule()
    everything = await activities.get("/v1/activities")
    assert activity_id in str(everything)
    assert await activities.get("/v1/activities?starts_from=0001-01-01") == everything
    assert activity_id not in str(await activities.get("/v1/activities?starts_from=9999-12-31"))
