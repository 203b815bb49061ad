"""HTTP routes of the claims service: thin; every rule is in domain.py."""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.ext.asyncio import AsyncConnection

from services.claims import domain, handlers
from services.claims import tables as t
from shared.aggregate import NotFound
from shared.auth import READERS, WRITERS, Principal, require
from shared.requests import NO_NUL, Code, Limit, Money, QueryText, chars, items
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork

router = APIRouter(tags=["claims"])
Reader = Annotated[Principal, Depends(require(*READERS))]
Writer = Annotated[Principal, Depends(require(*WRITERS))]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DocumentsIn(Strict):
    documents: Annotated[list[Code], items(50, min_length=1)] = Field(
        description="checklist codes received (copies)"
    )


class ApproveIn(Strict):
    amount: Money


class RejectIn(Strict):
    reason_code: domain.RejectionReason
    note: Annotated[str, chars(500, min_length=0, strip=False), NO_NUL] | None = None


class IllnessClaimIn(Strict):
    member_id: uuid.UUID
    plan_code: Code
    enrollment_id: uuid.UUID
    incident_on: date = Field(description="date of diagnosis or admission")


def runtime(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


def claim_view(row: sa.RowMapping) -> dict[str, Any]:
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


async def _claim_row(conn: AsyncConnection, claim_id: uuid.UUID) -> dict[str, Any]:
    row = (await conn.execute(sa.select(t.claims).where(t.claims.c.claim_id == claim_id))).mappings().first()
    if row is None:
        raise NotFound(f"claim {claim_id} not found")
    return claim_view(row)


@router.get("/claims")
async def list_claims(
    request: Request,
    _: Reader,
    report_id: uuid.UUID | None = None,
    member_id: uuid.UUID | None = None,
    status: QueryText | None = None,
    plan_code: QueryText | None = None,
    limit: Limit = 100,
) -> dict[str, Any]:
    q = sa.select(t.claims).order_by(t.claims.c.filed_on, t.claims.c.plan_code).limit(limit)
    for column, value in (
        ("report_id", report_id),
        ("member_id", member_id),
        ("status", status),
        ("plan_code", plan_code),
    ):
        if value is not None:
            q = q.where(t.claims.c[column] == value)
    async with runtime(request).engine.connect() as conn:
        rows = (await conn.execute(q)).mappings().all()
    return {"items": [claim_view(r) for r in rows]}


@router.get("/claims/{claim_id}")
async def get_claim(request: Request, claim_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    rt = runtime(request)
    async with rt.engine.connect() as conn:
        claim = await _claim_row(conn, claim_id)
        history = await rt.store.read_stream(conn, str(claim_id))
    claim["history"] = [
        {
            "event_type": e.event_type,
            "version": e.aggregate_version,
            "occurred_at": e.occurred_at.isoformat(),
            "data": e.data,
        }
        for e in history
    ]
    return claim


def _lifecycle(action: Any) -> Any:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        claim = await action(uow)
        return await _claim_row(uow.conn, uuid.UUID(claim.id))

    return work


@router.post("/claims/{claim_id}/documents")
async def documents_received(
    request: Request, claim_id: uuid.UUID, body: DocumentsIn, p: Writer
) -> JSONResponse:
    return await runtime(request).command(
        request,
        p,
        _lifecycle(lambda uow: handlers.receive_documents(uow, claim_id, body.documents)),
        status_code=200,
        body=body,
    )


@router.post("/claims/{claim_id}/approve")
async def approve(request: Request, claim_id: uuid.UUID, body: ApproveIn, p: Writer) -> JSONResponse:
    return await runtime(request).command(
        request,
        p,
        _lifecycle(lambda uow: handlers.approve(uow, claim_id, body.amount, runtime(request).clock)),
        status_code=200,
        body=body,
    )


@router.post("/claims/{claim_id}/reject")
async def reject(request: Request, claim_id: uuid.UUID, body: RejectIn, p: Writer) -> JSONResponse:
    return await runtime(request).command(
        request,
        p,
        _lifecycle(
            lambda uow: handlers.reject(uow, claim_id, body.reason_code, body.note, runtime(request).clock)
        ),
        status_code=200,
        body=body,
    )


@router.post("/claims/{claim_id}/pay")
async def pay(request: Request, claim_id: uuid.UUID, p: Writer) -> JSONResponse:
    return await runtime(request).command(
        request,
        p,
        _lifecycle(lambda uow: handlers.pay(uow, claim_id, runtime(request).clock)),
        status_code=200,
        body={},
    )


@router.post("/claims", status_code=201)
async def file_claim(request: Request, body: IllnessClaimIn, p: Writer) -> JSONResponse:
    """File an illness or hospitalisation claim (injury claims open themselves from reports)."""
    return await runtime(request).command(
        request,
        p,
        _lifecycle(
            lambda uow: handlers.file_illness_claim(
                uow,
                body.member_id,
                body.plan_code,
                body.enrollment_id,
                body.incident_on,
                runtime(request).clock,
            )
        ),
        status_code=201,
        body=body,
    )


@router.get("/reports/{report_id}")
async def report_decision(request: Request, report_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    """What an injury report led to: the claims it opened, why none, or that it is waiting."""
    async with runtime(request).engine.connect() as conn:
        decided = (
            (
                await conn.execute(
                    sa.select(t.report_decisions).where(t.report_decisions.c.report_id == report_id)
                )
            )
            .mappings()
            .first()
        )
        pending = (
            (
                await conn.execute(
                    sa.select(t.pending_reports).where(t.pending_reports.c.report_id == report_id)
                )
            )
            .mappings()
            .first()
        )
        rows = (
            (await conn.execute(sa.select(t.claims).where(t.claims.c.report_id == report_id)))
            .mappings()
            .all()
        )
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


@router.get("/members/{member_id}/entitlements")
async def entitlements(
    request: Request, member_id: uuid.UUID, _: Reader, on: date, work_related: bool = False
) -> dict[str, Any]:
    """What the member could claim for an injury on ``on``, and why (staff's reminder)."""
    async with runtime(request).uow() as uow:
        check = await handlers.check_entitlements(uow, member_id, on, work_related)
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


@router.get("/statistics/claims")
async def statistics(
    request: Request, _: Reader, year: Annotated[int, Query(ge=1990, le=2100)]
) -> dict[str, Any]:
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
    async with runtime(request).engine.connect() as conn:
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
