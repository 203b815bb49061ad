"""Valid identifiers for everything that posts members or cards: tests, bench, the demo.

Membership checks a national ID's GB 11643 check character and cross-checks its birth date and
gender digits with the body, and a card number's Luhn digit; these generators make numbers that
pass (and, by changing one digit, numbers that do not). Plain standard library, so scripts that
run outside pytest (``bench``, ``deploy/local/demo.py``) import it too.
"""

from __future__ import annotations

import itertools
import random
from datetime import date, timedelta

#: GB 11643 / ISO 7064 MOD 11-2: the weights of the first 17 digits and the check characters.
WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
CHECK_CHARACTERS = "10X98765432"
#: Beijing district codes (Dongcheng ... Yanqing): more room for distinct numbers per birth date.
REGIONS = ("110101", "110102", "110105", "110106", "110107", "110108", "110109", "110111", "110112", "110113")

_serial = itertools.count(random.randrange(500))


def check_character(first17: str) -> str:
    return CHECK_CHARACTERS[sum(int(d) * w for d, w in zip(first17, WEIGHTS, strict=True)) % 11]


def national_id(
    birth_date: date, *, female: bool = False, serial: int | None = None, region: str = "110113"
) -> str:
    """A valid resident ID for someone born on ``birth_date``: the 17th digit is odd for men and
    even for women. ``serial`` (0-499) picks the order code; by default a new one per call."""
    n = next(_serial) if serial is None else serial
    order = (n % 500) * 2 + (0 if female else 1)
    body = f"{region}{birth_date:%Y%m%d}{order:03d}"
    return body + check_character(body)


def identity(n: int, *, female: bool = False) -> tuple[date, str]:
    """A (birth date, national ID) pair distinct for every ``n`` below 36.5 million: the birth date
    (1976-1995: an adult of working age young enough for every age-limited plan), district and
    order code all come from ``n``."""
    order, rest = n % 500, n // 500
    region, rest = REGIONS[rest % len(REGIONS)], rest // len(REGIONS)
    birth = date(1976, 1, 1) + timedelta(days=rest % (20 * 365))
    return birth, national_id(birth, female=female, serial=order, region=region)


def luhn_digit(digits: str) -> str:
    total = 0
    for i, d in enumerate(reversed(digits)):
        k = int(d) * (2 if i % 2 == 0 else 1)
        total += k - 9 if k > 9 else k
    return str((10 - total % 10) % 10)


def luhn_complete(digits: str) -> str:
    """``digits`` plus its Luhn check digit (Jing cards are bank debit cards)."""
    return digits + luhn_digit(digits)


def card_number(prefix: str = "6217", length: int = 19) -> str:
    """A random card number with a valid Luhn digit."""
    body = prefix + "".join(random.choice("0123456789") for _ in range(length - 1 - len(prefix)))
    return luhn_complete(body)


def with_wrong_check(value: str) -> str:
    """The same number with its last character (the check) changed: a one-key typo."""
    last = value[-1]
    return value[:-1] + ("1" if last != "1" else "2")
