"""Request bodies, which are the commands the handlers take (docs/DESIGN.md §4, Counseling).

A refused body answers 422 naming the field and never echoes what was sent (shared/http.py):
whatever a client types as notes, a name or a phone never comes back in an error.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Self

from pydantic import model_validator

from shared.contracts.counseling import CancelledBy, Provider
from shared.requests import NO_NUL, Instant, RequestBody, Secret, Text, chars

#: Session notes: up to about ten pages.
NotesText = Annotated[str, chars(20_000), NO_NUL]
#: A person's name as typed.
FullName = Annotated[str, chars(100), NO_NUL]


class CounselorIn(RequestBody):
    display_name: Text
    provider: Provider
    #: The API token subject this counsellor acts as (``UNION_API_TOKENS`` grant ``subject``).
    subject: Annotated[str, chars(100), NO_NUL]


class SlotIn(RequestBody):
    starts_at: Instant
    ends_at: Instant


class ResidentIn(RequestBody):
    """A resident or worker of the area who is not a member: encrypted at rest, never on Kafka."""

    full_name: FullName
    phone: Secret


class BookingIn(RequestBody):
    slot_id: uuid.UUID
    member_id: uuid.UUID | None = None
    resident: ResidentIn | None = None

    @model_validator(mode="after")
    def _one_client(self) -> Self:
        if (self.member_id is None) == (self.resident is None):
            raise ValueError("give exactly one of member_id and resident")
        return self


class CompleteIn(RequestBody):
    notes: NotesText


class CancelIn(RequestBody):
    reason: Text | None = None
    #: Who cancelled, when staff record it; a counsellor's token always cancels as the counsellor.
    by: CancelledBy | None = None


class NoShowIn(RequestBody):
    reason: Text | None = None
