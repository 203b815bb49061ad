"""Request bodies of the claims service, which are the commands its handlers take."""

from __future__ import annotations

import uuid
from typing import Annotated

from pydantic import Field

from services.claims.domain import RejectionReason
from shared.requests import NO_NUL, Code, Day, Money, RequestBody, chars, items


class DocumentsIn(RequestBody):
    documents: Annotated[list[Code], items(50, min_length=1)] = Field(
        description="checklist codes received (copies)"
    )


class ApproveIn(RequestBody):
    amount: Money


class RejectIn(RequestBody):
    reason_code: RejectionReason
    note: Annotated[str, chars(500, min_length=0, strip=False), NO_NUL] | None = None


class IllnessClaimIn(RequestBody):
    member_id: uuid.UUID
    plan_code: Code
    enrollment_id: uuid.UUID
    incident_on: Day = Field(description="date of diagnosis or admission")
