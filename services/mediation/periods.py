"""The legal periods of a labour-dispute case, as data with their source, and how they are counted.

Counting follows the Civil Code of the PRC: art. 201 (a period in days, months or years starts on
the day *after* the day it is triggered: the day of receipt is not counted), art. 202 (a period in
months or years ends on the corresponding day of the last month, or on that month's last day if it
has none), art. 203 (a period whose last day is a statutory holiday or a rest day ends on the day
after the holiday: the next working day, by ``calendar``). Pure: no I/O, no clock.
"""

from __future__ import annotations

import calendar as gregorian
from dataclasses import dataclass
from datetime import date, timedelta
from enum import StrEnum

from services.mediation import calendar


class Unit(StrEnum):
    DAYS = "days"
    YEARS = "years"


@dataclass(frozen=True)
class LegalPeriod:
    code: str
    length: int
    unit: Unit
    source: str
    meaning: str

    def last_day(self, trigger: date) -> date:
        """The last day of the period triggered on ``trigger`` (Civil Code arts. 201-203)."""
        if self.unit is Unit.DAYS:
            end = trigger + timedelta(days=self.length)
        else:
            year = trigger.year + self.length
            end = date(year, trigger.month, min(trigger.day, gregorian.monthrange(year, trigger.month)[1]))
        return calendar.next_working_day_from(end)


#: Art. 14: if no agreement is reached within 15 days of the mediation organisation receiving the
#: application, the parties may apply for arbitration.
MEDIATION = LegalPeriod(
    "mediation",
    15,
    Unit.DAYS,
    "劳动争议调解仲裁法 art. 14 (Labour Dispute Mediation and Arbitration Law)",
    "no agreement within 15 days of receipt: the parties may apply for arbitration",
)
#: Art. 27: one year from the day the party knew or should have known of the infringement.
ARBITRATION = LegalPeriod(
    "arbitration_limit",
    1,
    Unit.YEARS,
    "劳动争议调解仲裁法 art. 27 (Labour Dispute Mediation and Arbitration Law)",
    "the time limit for applying for labour arbitration, from the day the worker learned of it",
)
#: Not law: the service's own policy of flagging a case this many days before its arbitration limit.
LIMIT_WARNING_DAYS = 30

PERIODS = (MEDIATION, ARBITRATION)
