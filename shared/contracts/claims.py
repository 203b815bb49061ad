"""Events on ``claims.events``."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal

from pydantic import Field

from shared.contracts.common import Benefit
from shared.events import DomainEvent, EventRegistry

TOPIC = "claims.events"


class ClaimFiled(DomainEvent):
    claim_id: uuid.UUID
    member_id: uuid.UUID
    report_id: uuid.UUID | None  # None for illness claims filed by staff
    plan_code: str
    benefit: Benefit
    enrollment_id: uuid.UUID | None  # None for card benefits
    required_documents: list[str]
    incident_on: date
    filed_on: date


class NoCoverageFound(DomainEvent):
    report_id: uuid.UUID
    member_id: uuid.UUID
    reasons: list[str]


class ClaimDocumentsReceived(DomainEvent):
    claim_id: uuid.UUID
    documents: list[str]
    complete: bool
    missing: list[str]


class ClaimApproved(DomainEvent):
    claim_id: uuid.UUID
    amount: Decimal = Field(gt=0)
    approved_on: date


class ClaimRejected(DomainEvent):
    claim_id: uuid.UUID
    reason_code: str
    note: str | None = None
    rejected_on: date


class ClaimPaid(DomainEvent):
    claim_id: uuid.UUID
    member_id: uuid.UUID
    plan_code: str
    amount: Decimal
    paid_on: date


registry = EventRegistry(
    [ClaimFiled, NoCoverageFound, ClaimDocumentsReceived, ClaimApproved, ClaimRejected, ClaimPaid]
)
