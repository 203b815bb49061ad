"""mediation.events -> the member's timeline: their labour-dispute cases, where each stands.

Only ``CaseReceived`` names the member; every later case event carries ``case_id`` alone, so the
``mediation_cases`` row written from ``CaseReceived`` is the map from case to member. A case of a
worker who is not a member has no member here and is skipped, and so are its later events (no
row to find).

What is kept is a choice, not a copy of the event: the case number, category, status, tier and
dates. Amounts of money (claimed, agreed, paid), the mediator, who recorded minutes and every
text (the arbitration body's name included) stay in the mediation service: a member's timeline is
read by staff of any station and by integrators, a mediation case file is not.

Like the activities feed, this is fed by another service's topic and is not rebuilt from this
service's store. Each write is idempotent on its own (insert-or-ignore, updates guarded by the
case stream's version), besides the inbox's deduplication.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.membership.tables import mediation_cases, mediation_events
from shared.contracts import mediation as md
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.inbox import Reaction
from shared.unit_of_work import UnitOfWork


@dataclass(frozen=True)
class Entry:
    """What one case event puts on the timeline (``fields``) and changes on the case row."""

    fields: dict[str, Any]
    case: dict[str, Any] = field(default_factory=dict)


Summarise = Callable[[Any], Entry]
timeline: HandlerTable[Summarise] = HandlerTable("membership.mediation_timeline")
timeline.ignore(
    md.RoomBooked,  # the room's stream: the case's MediationSessionScheduled says it for the member
    md.RoomReleased,  # likewise SessionCancelled / CaseWithdrawn
    md.MinutesRecorded,  # names who recorded them, and minutes are the mediation room's business
)


def _day(value: date) -> str:
    return value.isoformat()


@timeline.on(md.CaseReceived)
def _received(e: md.CaseReceived) -> Entry:
    row = {
        "case_number": e.case_number,
        "category": str(e.category),
        "status": "open",
        "tier": str(md.Tier.STREET),
        "received_on": e.received_on,
        "mediation_deadline": e.mediation_deadline,
        "arbitration_limit": e.arbitration_limit,
    }
    return Entry({k: _day(v) if isinstance(v, date) else v for k, v in row.items()}, row)


@timeline.on(md.MediationSessionScheduled)
def _scheduled(e: md.MediationSessionScheduled) -> Entry:
    return Entry(
        {
            "session_id": str(e.session_id),
            "starts_at": e.starts_at.isoformat(),
            "ends_at": e.ends_at.isoformat(),
        }
    )


@timeline.on(md.SessionCancelled)
def _session_cancelled(e: md.SessionCancelled) -> Entry:
    return Entry({"session_id": str(e.session_id), "cancelled_on": _day(e.cancelled_on)})


@timeline.on(md.AgreementReached)
def _agreed(e: md.AgreementReached) -> Entry:
    return Entry(
        {"agreed_on": _day(e.agreed_on), "due_on": _day(e.due_on)},
        {"status": "agreed", "tier": str(e.tier), "closed_on": e.agreed_on},
    )


@timeline.on(md.AgreementFulfilled)
def _fulfilled(e: md.AgreementFulfilled) -> Entry:
    return Entry({"fulfilled_on": _day(e.fulfilled_on)})


@timeline.on(md.EmployerRefused)
def _refused(e: md.EmployerRefused) -> Entry:
    return Entry({"refused_on": _day(e.refused_on)})


@timeline.on(md.CaseWithdrawn)
def _withdrawn(e: md.CaseWithdrawn) -> Entry:
    return Entry({"withdrawn_on": _day(e.withdrawn_on)}, {"status": "withdrawn", "closed_on": e.withdrawn_on})


@timeline.on(md.CaseReferredToArbitration)
def _referred(e: md.CaseReferredToArbitration) -> Entry:
    return Entry(
        {"referred_on": _day(e.referred_on)},
        {"status": "referred_to_arbitration", "tier": str(e.tier), "closed_on": e.referred_on},
    )


@timeline.on(md.CaseEscalated)
def _escalated(e: md.CaseEscalated) -> Entry:
    return Entry(
        {
            "from_tier": str(e.from_tier),
            "to_tier": str(e.to_tier),
            "escalated_on": _day(e.escalated_on),
            "mediation_deadline": _day(e.mediation_deadline),
        },
        {"status": "escalated", "tier": str(e.to_tier), "mediation_deadline": e.mediation_deadline},
    )


@timeline.on(md.MediationDeadlinePassed)
def _deadline(e: md.MediationDeadlinePassed) -> Entry:
    return Entry({"mediation_deadline": _day(e.mediation_deadline), "detected_on": _day(e.detected_on)})


@timeline.on(md.ArbitrationLimitNear)
def _limit(e: md.ArbitrationLimitNear) -> Entry:
    return Entry(
        {
            "arbitration_limit": _day(e.arbitration_limit),
            "detected_on": _day(e.detected_on),
            "days_left": e.days_left,
        }
    )


_CASE_INSERT = pg_insert(mediation_cases).on_conflict_do_nothing()
_EVENT_INSERT = pg_insert(mediation_events).on_conflict_do_nothing()


async def record_mediation_event(uow: UnitOfWork, env: EventEnvelope) -> None:
    if env.event_type not in md.registry:
        return
    event: DomainEvent = md.registry.decode(env.event_type, env.schema_version, env.data)
    summarise = timeline.handler(type(event))
    case_id = getattr(event, "case_id", None)
    if summarise is None or not isinstance(case_id, uuid.UUID):
        return
    entry = summarise(event)
    conn = uow.conn
    if isinstance(event, md.CaseReceived):
        if event.member_id is None:
            return  # a worker who is not a member: nothing of it belongs here
        await conn.execute(
            _CASE_INSERT,
            {
                "case_id": case_id,
                "member_id": event.member_id,
                "version": env.aggregate_version,
                **entry.case,
            },
        )
    elif entry.case:
        await conn.execute(
            sa.update(mediation_cases)
            .where(mediation_cases.c.case_id == case_id, mediation_cases.c.version < env.aggregate_version)
            .values(version=env.aggregate_version, **entry.case)
        )
    case = (
        (
            await conn.execute(
                sa.select(
                    mediation_cases.c.member_id,
                    mediation_cases.c.case_number,
                    mediation_cases.c.status,
                    mediation_cases.c.tier,
                ).where(mediation_cases.c.case_id == case_id)
            )
        )
        .mappings()
        .first()
    )
    if case is None:
        return  # not a member's case (or one received before this consumer existed)
    await conn.execute(
        _EVENT_INSERT,
        {
            "event_id": env.event_id,
            "member_id": case["member_id"],
            "case_id": case_id,
            "occurred_at": env.occurred_at,
            "aggregate_version": env.aggregate_version,
            "event_type": env.event_type,
            # The status and tier the case has after this event (a later redelivery of an older
            # event cannot regress them: the row's update above is guarded by the version).
            "data": {
                "case_id": str(case_id),
                "case_number": case["case_number"],
                "status": entry.case.get("status", case["status"]),
                "tier": entry.case.get("tier", case["tier"]),
                **entry.fields,
            },
        },
    )


MEDIATION_REACTIONS: dict[str, Reaction] = {t.event_type: record_mediation_event for t in timeline.handled()}
