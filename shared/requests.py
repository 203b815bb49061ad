"""Reusable, bounded request types: every string, list and number a client sends has a limit.

Unbounded input is how one request stops a service: a 2 MB plan name became an event Kafka
refuses, an ``offset`` above 2^63-1 a database error. Services build their request models from
these types, so a new service gets the limits by using them. NUL bytes are refused here too
(PostgreSQL cannot store them in text); ``shared.edge`` also refuses them anywhere in a request,
so a field someone forgot to type still answers 422, never 500.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
)

#: The largest offset a list endpoint accepts: far beyond any real page, far below int64.
MAX_OFFSET = 2**31 - 1
#: Page sizes; list endpoints default to 100.
MAX_LIMIT = 500


def no_nul(value: str) -> str:
    """PostgreSQL refuses U+0000 in text; refuse it at the edge with the field's name instead."""
    if "\x00" in value:
        raise ValueError("must not contain NUL characters (U+0000)")
    return value


#: Refuses NUL in a string field: ``Annotated[str, chars(100), NO_NUL]``.
NO_NUL = AfterValidator(no_nul)


def chars(max_length: int, *, min_length: int = 1, strip: bool = True) -> StringConstraints:
    """``min_length``..``max_length`` characters, after trimming when ``strip``."""
    return StringConstraints(strip_whitespace=strip, min_length=min_length, max_length=max_length)


def items(max_length: int, *, min_length: int = 0) -> Any:
    """At most ``max_length`` items in a list: ``Annotated[list[Money], items(20)]``."""
    return Field(min_length=min_length, max_length=max_length)


#: A name, a title, a reason: one line.
Text = Annotated[str, chars(200), NO_NUL]
#: A description, a note: a paragraph or two.
LongText = Annotated[str, chars(4000), NO_NUL]
#: Identifiers typed by people (national ID, phone, card number): short, validated by the domain.
Secret = Annotated[str, chars(40, min_length=0, strip=False), NO_NUL]
#: A catalogue code such as a plan code.
Code = Annotated[str, chars(64), NO_NUL]

#: Amounts in CNY: a positive decimal with at most two places, sent as a JSON number or a string.
MONEY_PATTERN = r"^[0-9]{1,10}(\.[0-9]{1,2})?$"
_MONEY_TEXT = re.compile(MONEY_PATTERN)


def _money_text(value: Any) -> Any:
    """A string amount must be written as the schema says ("1200.50"): not "1e3", not " 5"."""
    if isinstance(value, str) and not _MONEY_TEXT.fullmatch(value):
        raise ValueError("must be a decimal amount such as 1200.50 (at most two decimal places)")
    return value


Money = Annotated[
    Decimal,
    BeforeValidator(_money_text),
    Field(gt=0, max_digits=12, decimal_places=2),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "number", "exclusiveMinimum": 0, "maximum": 9_999_999_999.99},
                {"type": "string", "pattern": MONEY_PATTERN},
            ],
            "description": "CNY, at most two decimal places",
        },
        mode="validation",
    ),
    WithJsonSchema({"type": "string", "pattern": MONEY_PATTERN, "description": "CNY"}, mode="serialization"),
]
#: Money in an answer: always a decimal string such as "1200.00".
MoneyText = Annotated[str, Field(pattern=r"^-?[0-9]+\.[0-9]{2}$", description="CNY, a decimal string")]

#: Query parameters of list endpoints.
Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT)]
Offset = Annotated[int, Query(ge=0, le=MAX_OFFSET)]
#: A free-text query parameter (a name to search for, a code to filter on).
QueryText = Annotated[str, Query(max_length=100), AfterValidator(no_nul)]


_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_date_only(value: Any) -> Any:
    """JSON dates are 'YYYY-MM-DD' strings: no timestamps, no datetimes, no numbers."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


#: A calendar date (a Beijing date when it is a business date), written ``YYYY-MM-DD``.
Day = Annotated[date, BeforeValidator(_iso_date_only)]


def _rfc3339_only(value: Any) -> Any:
    """Instants are RFC 3339 strings with an offset; numbers (epoch seconds) are refused."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str):
        raise ValueError("must be an RFC 3339 timestamp with an offset, e.g. 2026-05-10T09:00:00+08:00")
    return value


def _storable_instant(value: datetime) -> datetime:
    """An instant whose UTC form is out of range (``9999-12-31T23:00:00-12:00`` is year 10000 in
    UTC) cannot be stored or compared: refuse it here, naming the field, instead of a 500."""
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("must be an instant between years 1 and 9999 in UTC") from None
    return value


#: An instant with its offset (``2026-05-10T09:00:00+08:00``): a time without one is refused,
#: because staff in Beijing and a server in UTC would read it eight hours apart.
Instant = Annotated[AwareDatetime, BeforeValidator(_rfc3339_only), AfterValidator(_storable_instant)]


class RequestBody(BaseModel):
    """Base of request bodies, which are also the commands handlers take: immutable once
    validated, and a field the contract does not know is refused (a misspelt optional field
    would otherwise be dropped silently)."""

    model_config = ConfigDict(frozen=True, extra="forbid")
