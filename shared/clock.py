"""Business time: every rule about "today" is judged on a Beijing date from an injected clock.

China keeps UTC+8 all year (no daylight saving since 1991), so a fixed offset is exact and needs
no tz database in the image. Services take a ``Clock`` in their wiring; tests pass ``fixed(day)``
instead of depending on the real date.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, time, timedelta, timezone

#: The zone of every business date and of every time staff type in.
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")

#: Gives "today" as a Beijing date.
Clock = Callable[[], date]


def beijing_today() -> date:
    return datetime.now(BEIJING).date()


def beijing_date(moment: datetime) -> date:
    """The Beijing date of an aware timestamp (a naive one is taken as UTC)."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(BEIJING).date()


def beijing_day_bounds(day: date) -> tuple[datetime | None, datetime]:
    """The instants, in UTC, where Beijing day ``day`` starts and ends (half-open), for comparing
    with stored timestamps. The start of 0001-01-01 in Beijing is 0000-12-31 in UTC, which no
    datetime can hold (a query passing it failed with a 500): it comes back as None, no lower
    bound, and that is exact, because every storable instant is later. The end of 9999-12-31 is
    9999-12-31T16:00Z, so it always fits."""
    midnight = datetime.combine(day, time(0), UTC)
    offset = BEIJING.utcoffset(None)
    start = midnight - offset if day > date.min else None
    return start, midnight + (timedelta(days=1) - offset)


def fixed(day: date) -> Clock:
    """A clock that always says ``day``: for tests and for replaying a past day's sweep."""
    return lambda: day
