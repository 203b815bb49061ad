"""Reusable, bounded request types: every string, list and number a client sends has a limit.

Unbounded input is how one request stops a service: a 2 MB plan name became an event Kafka
refuses, an ``offset`` above 2^63-1 a database error. Services build their request models from
these types, so a new service gets the limits by using them. NUL bytes are refused here too
(PostgreSQL cannot store them in text); ``shared.edge`` also refuses them anywhere in a request,
so a field someone forgot to type still answers 422, never 500.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import Query
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

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
Money = Annotated[
    Decimal,
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


class RequestBody(BaseModel):
    """Base of request bodies: immutable once validated."""

    model_config = ConfigDict(frozen=True)
