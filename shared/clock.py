"""Business time: every rule about "today" is judged on a Beijing date from an injected clock.

China keeps UTC+8 all year (no daylight saving since 1991), so a fixed offset is exact and needs
no tz database in the image. Services take a ``Clock`` in their wiring; tests pass ``fixed(day)``
instead of depending on the real date.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta, timezone

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


def fixed(day: date) -> Clock:
    """A clock that always says ``day``: for tests and for replaying a past day's sweep."""
    return lambda: day
