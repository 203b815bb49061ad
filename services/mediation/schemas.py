"""Request bodies, which are the commands the handlers take (docs/DESIGN.md §4, mediation)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints, model_validator

from shared.contracts.mediation import Category
from shared.requests import (
    NO_NUL,
    Code,
    Day,
    Instant,
    LongText,
    Money,
    RequestBody,
    Secret,
    Text,
    chars,
    items,
)

#: A unified social credit code (统一社会信用代码): 18 characters, digits and capitals.
CreditCode = Annotated[
    str, StringConstraints(pattern=r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")
]
#: Minutes of a session: longer than a note.
Minutes = Annotated[str, chars(20_000), NO_NUL]
#: A role attending a session (``worker``, ``employer``, ``union_representative``, ``lawyer``...).
PartyRole = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z_]{0,39}$")]
#: A case-number prefix: two to six capitals.
Prefix = Annotated[str, StringConstraints(pattern=r"^[A-Z]{2,6}$")]


class Worker(RequestBody):
    """A worker who is not a member: kept encrypted, never on Kafka."""

    full_name: Annotated[str, chars(100), NO_NUL]
    phone: Secret | None = None


class Employer(RequestBody):
    name: Text
    credit_code: CreditCode | None = None


class ReceiveCase(RequestBody):
    union_id: uuid.UUID
    member_id: uuid.UUID | None = None
    worker: Worker | None = None
    employer: Employer
    category: Category
    claim_text: LongText
    amount: Money | None = None
    learned_on: Day
    received_on: Day | None = None

    @model_validator(mode="after")
    def _one_party(self) -> Self:
        if (self.member_id is None) == (self.worker is None):
            raise ValueError("give either member_id or worker, not both and not neither")
        return self


class ScheduleSession(RequestBody):
    starts_at: Instant
    ends_at: Instant
    #: The mediating staff member: the subject of their token (``mediator-1``).
    mediator: Code
    parties_present: Annotated[list[PartyRole], items(10)] = Field(default_factory=list)


class RecordMinutes(RequestBody):
    minutes: Minutes


class ReachAgreement(RequestBody):
    terms: LongText
    amount: Money
    due_on: Day


class RecordFulfilment(RequestBody):
    amount_paid: Money
    fulfilled_on: Day | None = None


class Escalate(RequestBody):
    reason: LongText


class Refer(RequestBody):
    to: Literal["arbitration"]
    #: Which labour dispute arbitration commission (e.g. 顺义区劳动人事争议仲裁委员会).
    body: Text = "labour dispute arbitration commission"


class Close(RequestBody):
    """Employer refused, or withdrawn: an optional reason (kept encrypted) and date."""

    reason: LongText | None = None
    on: Day | None = None


class CancelSession(RequestBody):
    """Call off one scheduled session: an optional reason, kept encrypted, never on Kafka."""

    reason: LongText | None = None


class Sweep(RequestBody):
    on: Day | None = None


class ConfigureStation(RequestBody):
    case_prefix: Prefix
