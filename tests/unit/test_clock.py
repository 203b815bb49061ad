"""``beijing_day_bounds``: the UTC instants of a Beijing day, at the edges of the date range too."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from shared.clock import beijing_date, beijing_day_bounds


def test_a_beijing_day_runs_from_16_00_utc_the_day_before_to_16_00_utc() -> None:
    start, end = beijing_day_bounds(date(2026, 5, 10))
    assert start == datetime(2026, 5, 9, 16, tzinfo=UTC)
    assert end == datetime(2026, 5, 10, 16, tzinfo=UTC)
    assert beijing_date(start) == date(2026, 5, 10) != beijing_date(end)


def test_the_first_day_has_no_lower_bound_and_the_last_day_an_end_that_fits() -> None:
    # Midnight of 0001-01-01 in Beijing is year 0 in UTC: no datetime can hold it.
    assert beijing_day_bounds(date.min) == (None, datetime(1, 1, 1, 16, tzinfo=UTC))
    start, end = beijing_day_bounds(date.max)
    assert start == datetime(9999, 12, 30, 16, tzinfo=UTC)
    assert end == datetime(9999, 12, 31, 16, tzinfo=UTC)
    assert end - start == timedelta(days=1)  # 24:00 in Beijing, 10000-01-01 there, still fits in UTC
