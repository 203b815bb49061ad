"""Read side of the claims service: every query over its read models, and the shaping of every
answer (a command's too: ``claim_answer`` turns the claim a handler returns into its JSON).
Nothing here changes state."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.claims import domain
from services.claims import tables as t
from services.claims.projections import load_coverage, load_plans
from shared.aggregate import NotFound
from shared.eventstore import EventStore

JSON = dict[str, Any]


def claim_view(row: sa.RowMapping) -> JSON:
    def money(v: Decimal | None) -> str | None:
        return None if v is None else f"{v:.2f}"

    return {
        "claim_id": str(row["claim_id"]),
        "member_id": str(row["member_id"]),
        "report_id": None if row["report_id"] is None else str(row["report_id"]),
        "plan_code": row["plan_code"],
        "benefit": row["benefit"],
        "enrollment_id": None if row["enrollment_id"] is None else str(row["enrollment_id"]),
        "status": row["status"],
        "required_documents": row["required_documents"],
        "received_documents": row["received_documents"],
        "missing_documents": row["missing_documents"],
        "approved_amount": money(row["approved_amount"]),
        "paid_amount": money(row["paid_amount"]),
        "rejection_reason": row["rejection_reason"],
        "incident_on": row["incident_on"].isoformat(),
        "filed_on": row["filed_on"].isoformat(),
    }


async def claim(conn: AsyncConnection, claim_id: uuid.UUID) -> JSON:
    row = (await conn.execute(sa.select(t.claims).where(t.claims.c.claim_id == claim_id))).mappings().first()
    if row is None:
        raise NotFound(f"claim {claim_id} not found")
    return claim_view(row)


async def claim_answer(conn: AsyncConnection, result: domain.Claim) -> JSON:
    """The answer of a lifecycle command: the claim's row, as its own transaction projected it."""
    return await claim(conn, result.id)


async def claim_with_history(conn: AsyncConnection, store: EventStore, claim_id: uuid.UUID) -> JSON:
    found = await claim(conn, claim_id)
    history = await store.read_stream(conn, str(claim_id))
    found["history"] = [
        {
            "event_type": e.event_type,
            "version": e.aggregate_version,
            "occurred_at": e.occurred_at.isoformat(),
            "data": e.data,
        }
        for e in history
    ]
    return found


async def list_claims(
    conn: AsyncConnection,
    *,
    report_id: uuid.UUID | None,
    member_id: uuid.UUID | None,
    status: str | None,
    plan_code: str | None,
    limit: int,
) -> JSON:
    q = sa.select(t.claims).order_by(t.claims.c.filed_on, t.claims.c.plan_code).limit(limit)
    for column, value in (
        ("report_id", report_id),
        ("member_id", member_id),
        ("status", status),
        ("plan_code", plan_code),
    ):
        if value is not None:
            q = q.where(t.claims.c[column] == value)
    rows = (await conn.execute(q)).mappings().all()
    return {"items": [claim_view(r) for r in rows]}


async def report_decision(conn: AsyncConnection, report_id: uuid.UUID) -> JSON:
    """What an injury report led to: the claims it opened, why none, or that it is waiting."""
    decided = (
        (await conn.execute(sa.select(t.report_decisions).where(t.report_decisions.c.report_id == report_id)))
        .mappings()
        .first()
    )
    pending = (
        (await conn.execute(sa.select(t.pending_reports).where(t.pending_reports.c.report_id == report_id)))
        .mappings()
        .first()
    )
    rows = (await conn.execute(sa.select(t.claims).where(t.claims.c.report_id == report_id))).mappings().all()
    if decided is None and pending is None:
        raise NotFound(f"report {report_id} has not reached the claims service")
    state = "pending_coverage" if decided is None else ("claims_opened" if rows else "no_coverage")
    return {
        "report_id": str(report_id),
        "state": state,
        "reasons": decided["reasons"] if decided else [],
        "waiting_for_member_version": pending["needed_version"] if pending else None,
        "claims": [claim_view(r) for r in rows],
    }


async def entitlements(conn: AsyncConnection, member_id: uuid.UUID, on: date, work_related: bool) -> JSON:
    """What the member could claim for an injury on ``on``, and why (staff's reminder)."""
    injury = domain.Injury(uuid.UUID(int=0), member_id, on, work_related)
    check = domain.entitlements(injury, await load_coverage(conn, member_id), await load_plans(conn))
    return {
        "member_id": str(member_id),
        "on": on.isoformat(),
        "work_related": work_related,
        "entitlements": [
            {
                "plan_code": e.plan_code,
                "benefit": e.benefit.value,
                "enrollment_id": None if e.enrollment_id is None else str(e.enrollment_id),
                "required_documents": list(e.required_documents),
            }
            for e in check.entitlements
        ],
        "reasons": list(check.reasons),
    }


async def statistics(conn: AsyncConnection, year: int) -> JSON:
    q = (
        sa.select(
            t.claims.c.plan_code,
            t.claims.c.status,
            sa.func.count().label("claims"),
            sa.func.coalesce(sa.func.sum(t.claims.c.paid_amount), 0).label("paid"),
        )
        .where(sa.extract("year", t.claims.c.incident_on) == year)
        .group_by(t.claims.c.plan_code, t.claims.c.status)
        .order_by(t.claims.c.plan_code, t.claims.c.status)
    )
    rows = (await conn.execute(q)).all()
    plans: dict[str, dict[str, Any]] = {}
    for plan_code, status, count, paid in rows:
        entry = plans.setdefault(
            plan_code, {"plan_code": plan_code, "claims": 0, "by_status": {}, "paid_amount": Decimal(0)}
        )
        entry["claims"] += count
        entry["by_status"][status] = count
        entry["paid_amount"] += paid
    return {"year": year, "plans": [{**p, "paid_amount": f"{p['paid_amount']:.2f}"} for p in plans.values()]}


# --- lookups the handlers' rules need -----------------------------------------------------------


async def enrollment_fact(
    conn: AsyncConnection, enrollment_id: uuid.UUID | None
) -> domain.EnrollmentFact | None:
    if enrollment_id is None:
        return None
    row = (
        (
            await conn.execute(
                sa.select(t.coverage_enrollments).where(
                    t.coverage_enrollments.c.enrollment_id == enrollment_id
                )
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    return domain.EnrollmentFact(
        row["enrollment_id"],
        row["plan_code"],
        row["shares"],
        row["starts_on"],
        row["ends_on"],
        row["cancelled_on"],
    )


async def enrollment_member(conn: AsyncConnection, enrollment_id: uuid.UUID) -> uuid.UUID | None:
    """Whose enrolment this is, as the coverage model knows it."""
    return await conn.scalar(
        sa.select(t.coverage_enrollments.c.member_id).where(
            t.coverage_enrollments.c.enrollment_id == enrollment_id
        )
    )
