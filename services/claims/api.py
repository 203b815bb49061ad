"""HTTP routes of the claims service: thin. The body is the command (``schemas``), the handler
decides through the domain, ``views`` shape the answer and hold every read."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse

from services.claims import domain, handlers, views
from services.claims.schemas import ApproveIn, DocumentsIn, IllnessClaimIn, RejectIn
from shared.auth import READERS, WRITERS, Principal, require
from shared.requests import Limit, QueryText
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork

router = APIRouter(tags=["claims"])
Reader = Annotated[Principal, Depends(require(*READERS))]
Writer = Annotated[Principal, Depends(require(*WRITERS))]


def runtime(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


async def _lifecycle(
    request: Request,
    principal: Principal,
    handle: Callable[[UnitOfWork], Awaitable[domain.Claim]],
    *,
    status_code: int,
    body: Any,
) -> JSONResponse:
    """Run a claim command; its answer is the claim as the same transaction projected it."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await views.claim_answer(uow.conn, await handle(uow))

    return await runtime(request).command(request, principal, work, status_code=status_code, body=body)


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
    async with runtime(request).engine.connect() as conn:
        return await views.list_claims(
            conn, report_id=report_id, member_id=member_id, status=status, plan_code=plan_code, limit=limit
        )


@router.get("/claims/{claim_id}")
async def get_claim(request: Request, claim_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    rt = runtime(request)
    async with rt.engine.connect() as conn:
        return await views.claim_with_history(conn, rt.store, claim_id)


@router.post("/claims/{claim_id}/documents")
async def documents_received(
    request: Request, claim_id: uuid.UUID, body: DocumentsIn, p: Writer
) -> JSONResponse:
    return await _lifecycle(
        request,
        p,
        lambda uow: handlers.receive_documents(uow, body, claim_id=claim_id),
        status_code=200,
        body=body,
    )


@router.post("/claims/{claim_id}/approve")
async def approve(request: Request, claim_id: uuid.UUID, body: ApproveIn, p: Writer) -> JSONResponse:
    clock = runtime(request).clock
    return await _lifecycle(
        request,
        p,
        lambda uow: handlers.approve(uow, body, clock, claim_id=claim_id),
        status_code=200,
        body=body,
    )


@router.post("/claims/{claim_id}/reject")
async def reject(request: Request, claim_id: uuid.UUID, body: RejectIn, p: Writer) -> JSONResponse:
    clock = runtime(request).clock
    return await _lifecycle(
        request,
        p,
        lambda uow: handlers.reject(uow, body, clock, claim_id=claim_id),
        status_code=200,
        body=body,
    )


@router.post("/claims/{claim_id}/pay")
async def pay(request: Request, claim_id: uuid.UUID, p: Writer) -> JSONResponse:
    clock = runtime(request).clock
    return await _lifecycle(
        request, p, lambda uow: handlers.pay(uow, clock, claim_id=claim_id), status_code=200, body={}
    )


@router.post("/claims", status_code=201)
async def file_claim(request: Request, body: IllnessClaimIn, p: Writer) -> JSONResponse:
    """File an illness or hospitalisation claim (injury claims open themselves from reports)."""
    clock = runtime(request).clock
    return await _lifecycle(
        request, p, lambda uow: handlers.file_illness_claim(uow, body, clock), status_code=201, body=body
    )


@router.get("/reports/{report_id}")
async def report_decision(request: Request, report_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    """What an injury report led to: the claims it opened, why none, or that it is waiting."""
    async with runtime(request).engine.connect() as conn:
        return await views.report_decision(conn, report_id)


@router.get("/members/{member_id}/entitlements")
async def entitlements(
    request: Request, member_id: uuid.UUID, _: Reader, on: date, work_related: bool = False
) -> dict[str, Any]:
    """What the member could claim for an injury on ``on``, and why (staff's reminder)."""
    async with runtime(request).engine.connect() as conn:
        return await views.entitlements(conn, member_id, on, work_related)


@router.get("/statistics/claims")
async def statistics(
    request: Request, _: Reader, year: Annotated[int, Query(ge=1990, le=2100)]
) -> dict[str, Any]:
    async with runtime(request).engine.connect() as conn:
        return await views.statistics(conn, year)
