"""China's working-day calendar as data: the State Council's holiday notices, year by year.

Each year lists the days off (statutory holidays and the rest days moved next to them) and the
*shifted working days* (调休上班): weekend days that are working days that year. Every other
Saturday and Sunday is a rest day, every other weekday a working day. A year not listed here is
counted with weekends only, and answers say so (``covers``): add the year's notice when the State
Council publishes it (usually in November of the year before). Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta


def _span(first: date, last: date) -> frozenset[date]:
    return frozenset(first + timedelta(days=n) for n in range((last - first).days + 1))


@dataclass(frozen=True)
class YearNotice:
    year: int
    source: str
    days_off: frozenset[date]
    working_weekend_days: frozenset[date]


def _notice(year: int, source: str, off: list[tuple[date, date]], working: list[date]) -> YearNotice:
    days: frozenset[date] = frozenset()
    for first, last in off:
        days |= _span(first, last)
    return YearNotice(year, source, days, frozenset(working))


NOTICES: dict[int, YearNotice] = {
    notice.year: notice
    for notice in (
        _notice(
            2025,
            "国务院办公厅关于2025年部分节假日安排的通知 (国办发明电[2024]12号, 2024-11-12)",
            [
                (date(2025, 1, 1), date(2025, 1, 1)),  # New Year's Day
                (date(2025, 1, 28), date(2025, 2, 4)),  # Spring Festival
                (date(2025, 4, 4), date(2025, 4, 6)),  # Qingming
                (date(2025, 5, 1), date(2025, 5, 5)),  # Labour Day
                (date(2025, 5, 31), date(2025, 6, 2)),  # Dragon Boat
                (date(2025, 10, 1), date(2025, 10, 8)),  # National Day and Mid-Autumn
            ],
            [date(2025, 1, 26), date(2025, 2, 8), date(2025, 4, 27), date(2025, 9, 28), date(2025, 10, 11)],
        ),
        _notice(
            2026,
            "国务院办公厅关于2026年部分节假日安排的通知 (2025-11-04)",
            [
                (date(2026, 1, 1), date(2026, 1, 3)),  # New Year's Day
                (date(2026, 2, 15), date(2026, 2, 23)),  # Spring Festival
                (date(2026, 4, 4), date(2026, 4, 6)),  # Qingming
                (date(2026, 5, 1), date(2026, 5, 5)),  # Labour Day
                (date(2026, 6, 19), date(2026, 6, 21)),  # Dragon Boat
                (date(2026, 9, 25), date(2026, 9, 27)),  # Mid-Autumn
                (date(2026, 10, 1), date(2026, 10, 7)),  # National Day
            ],
            [
                date(2026, 1, 4),
                date(2026, 2, 14),
                date(2026, 2, 28),
                date(2026, 5, 9),
                date(2026, 9, 20),
                date(2026, 10, 10),
            ],
        ),
    )
}


def covers(day: date) -> bool:
    """Whether ``day``'s year has its holiday notice here (else: weekends only)."""
    return day.year in NOTICES


def is_working_day(day: date) -> bool:
    notice = NOTICES.get(day.year)
    if notice is not None:
        if day in notice.days_off:
            return False
        if day in notice.working_weekend_days:
            return True
    return day.weekday() < 5


def next_working_day_from(day: date) -> date:
    """``day`` itself if it is a working day, else the first working day after it."""
    while not is_working_day(day):
        day += timedelta(days=1)
    return day
