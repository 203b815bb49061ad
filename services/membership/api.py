"""HTTP API (docs/DESIGN.md §4), under /v1: thin routes. Every route names the roles it admits.

The body is the command (``schemas``); writes go through ``runtime.command`` (one transaction,
retried on version conflicts, ``Idempotency-Key`` replay) running a handler, whose result
``views`` shape as the answer. Reads are ``views`` queries over the read models.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from services.membership import handlers, views
from services.membership.schemas import (
    CardAnswer,
    CardCancelIn,
    CardIn,
    CardReplaceIn,
    ContactIn,
    EnrollmentCancelIn,
    EnrollmentCreated,
    EnrollmentIn,
    InjuryReportIn,
    LeaveIn,
    LookupIn,
    MemberCreated,
    MemberIn,
    PlanIn,
    ReportAccepted,
    TransferIn,
    UnionCreated,
    UnionIn,
)
from services.membership.vault import Vault
from shared.aggregate import NotFound
from shared.audit import AuditTrail
from shared.auth import READERS, WRITERS, Principal, Role, require
from shared.clock import Clock
from shared.contracts.membership import UnionLevel
from shared.contracts.plans import Plan
from shared.http import ProblemError
from shared.requests import Limit, Offset, QueryText
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork

# --- plumbing ---------------------------------------------------------------------------------

Writer = Annotated[Principal, Depends(require(*WRITERS))]
Reader = Annotated[Principal, Depends(require(*READERS))]
Supervisor = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
#: Any authenticated caller: the route itself decides, after recording the attempt.
Anyone = Annotated[Principal, Depends(require(*Role))]
PlanCode = Annotated[str, Path(min_length=1, max_length=64)]

R = TypeVar("R")


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


def _audit(request: Request) -> AuditTrail:
    trail: AuditTrail = request.app.state.audit
    return trail


def _clock(request: Request) -> Clock:
    return _runtime(request).clock


@asynccontextmanager
async def _read(request: Request) -> AsyncIterator[AsyncConnection]:
    async with _runtime(request).engine.connect() as conn:
        yield conn


def _fingerprinted(request: Request, body: BaseModel, *secret_fields: str) -> dict[str, Any]:
    """What the idempotency record hashes: the body with its secrets replaced by keyed
    fingerprints, so a stored request hash cannot be brute-forced back into a national ID."""
    payload = body.model_dump(mode="json")
    vault = _vault(request)
    for name in secret_fields:
        if payload.get(name) is not None:
            payload[name] = vault.fingerprint(str(payload[name]), name)
    return payload


async def _command(
    request: Request,
    principal: Principal,
    handle: Callable[[UnitOfWork], Awaitable[R]],
    answer: Callable[[R], dict[str, Any]],
    *,
    status_code: int,
    body: Any,
    grouped: bool = False,
) -> JSONResponse:
    """Run ``handle`` in ``runtime.command`` and answer ``answer(result)``. A command that still
    loses the race after the retries is answered 409 `concurrent_update` (shared/http.py)."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return answer(await handle(uow))

    return await _runtime(request).command(
        request, principal, work, status_code=status_code, body=body, grouped=grouped
    )


def _not_found(what: str, ident: object) -> NotFound:
    return NotFound(f"{what} {ident} not found")


# --- unions -----------------------------------------------------------------------------------

unions_router = APIRouter(tags=["unions"])


@unions_router.post("/unions", status_code=201, response_model=UnionCreated)
async def register_union(request: Request, body: UnionIn, principal: Writer) -> JSONResponse:
    return await _command(
        request,
        principal,
        lambda uow: handlers.register_union(uow, body),
        views.union_created,
        status_code=201,
        body=body,
    )


@unions_router.get("/unions")
async def list_unions(
    request: Request,
    _: Reader,
    level: UnionLevel | None = None,
    parent_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    async with _read(request) as conn:
        return {"items": await views.list_unions(conn, level=level, parent_id=parent_id)}


@unions_router.get("/unions/{union_id}")
async def get_union(request: Request, union_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        found = await views.get_union(conn, union_id)
    if found is None:
        raise _not_found("union", union_id)
    return found


@unions_router.get("/unions/{union_id}/members")
async def union_members(
    request: Request,
    union_id: uuid.UUID,
    _: Reader,
    status: Literal["active", "left"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Members of this union and of every union under it."""
    async with _read(request) as conn:
        if await views.get_union(conn, union_id) is None:
            raise _not_found("union", union_id)
        items = await views.search_members(
            conn, _vault(request), union_id=union_id, name=None, status=status, limit=limit, offset=offset
        )
    return {"items": items, "limit": limit, "offset": offset}


# --- members ----------------------------------------------------------------------------------

members_router = APIRouter(tags=["members"])


@members_router.post("/members", status_code=201, response_model=MemberCreated)
async def join_member(request: Request, body: MemberIn, principal: Writer) -> JSONResponse:
    return await _command(
        request,
        principal,
        lambda uow: handlers.join_member(uow, body, _clock(request), vault=_vault(request)),
        views.member_created,
        status_code=201,
        body=_fingerprinted(request, body, "national_id", "phone"),
    )


@members_router.get("/members")
async def search_members(
    request: Request,
    _: Reader,
    union_id: uuid.UUID | None = None,
    name: QueryText | None = None,
    status: Literal["active", "left"] | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """``union_id`` also matches the unions under it; ``name`` matches a part of the name."""
    async with _read(request) as conn:
        items = await views.search_members(
            conn, _vault(request), union_id=union_id, name=name, status=status, limit=limit, offset=offset
        )
    return {"items": items, "limit": limit, "offset": offset}


@members_router.post("/members/lookup")
async def lookup_member(request: Request, body: LookupIn, _: Writer) -> dict[str, Any]:
    """Find a member by national ID (in the body, so it never lands in an access log)."""
    async with _read(request) as conn:
        found = await views.member_with_national_id(conn, _vault(request), body.national_id)
    if found is None:
        raise NotFound("no member with this national_id", field="national_id")
    return found


@members_router.get("/members/{member_id}")
async def get_member(request: Request, member_id: uuid.UUID, principal: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        found = await views.member_detail(
            conn, _vault(request), member_id, with_receipts=principal.role in WRITERS
        )
    if found is None:
        raise _not_found("member", member_id)
    return found


@members_router.get("/members/{member_id}/timeline")
async def member_timeline(request: Request, member_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        if not await views.member_exists(conn, member_id):
            raise _not_found("member", member_id)
        items = await views.timeline(conn, member_id)
        cases = await views.member_mediation_cases(conn, member_id)
    return {"member_id": str(member_id), "items": items, "mediation_cases": cases}


@members_router.post("/members/{member_id}/transfer")
async def transfer_member(
    request: Request, member_id: uuid.UUID, body: TransferIn, principal: Writer
) -> JSONResponse:
    return await _command(
        request,
        principal,
        lambda uow: handlers.transfer_member(uow, body, _clock(request), member_id=member_id),
        views.transfer_answer,
        status_code=200,
        body=body,
    )


@members_router.post("/members/{member_id}/leave")
async def member_leaves(
    request: Request, member_id: uuid.UUID, body: LeaveIn, principal: Writer
) -> JSONResponse:
    return await _command(
        request,
        principal,
        lambda uow: handlers.leave(uow, body, _clock(request), member_id=member_id),
        views.leave_answer,
        status_code=200,
        body=body,
    )


@members_router.post("/members/{member_id}/contact")
async def change_contact(
    request: Request, member_id: uuid.UUID, body: ContactIn, principal: Writer
) -> JSONResponse:
    """Change the member's phone. The same number again is answered 200 with ``changed: false``
    and publishes nothing."""
    return await _command(
        request,
        principal,
        lambda uow: handlers.change_contact(
            uow, body, _clock(request), member_id=member_id, vault=_vault(request)
        ),
        views.contact_answer,
        status_code=200,
        body=_fingerprinted(request, body, "phone"),
    )


# --- Jing card --------------------------------------------------------------------------------


@members_router.post("/members/{member_id}/card", status_code=201, response_model=CardAnswer)
async def issue_card(request: Request, member_id: uuid.UUID, body: CardIn, principal: Writer) -> JSONResponse:
    return await _command(
        request,
        principal,
        lambda uow: handlers.issue_card(
            uow, body, _clock(request), member_id=member_id, vault=_vault(request)
        ),
        views.card_issued_answer,
        status_code=201,
        body=_fingerprinted(request, body, "card_number"),
    )


@members_router.post("/members/{member_id}/card/cancel")
async def cancel_card(
    request: Request,
    member_id: uuid.UUID,
    principal: Writer,
    body: Annotated[CardCancelIn | None, Body()] = None,
) -> JSONResponse:
    command = body or CardCancelIn()
    return await _command(
        request,
        principal,
        lambda uow: handlers.cancel_card(uow, command, _clock(request), member_id=member_id),
        views.card_cancelled_answer,
        status_code=200,
        body=command,
    )


@members_router.post("/members/{member_id}/card/replace", status_code=201, response_model=CardAnswer)
async def replace_card(
    request: Request, member_id: uuid.UUID, body: CardReplaceIn, principal: Writer
) -> JSONResponse:
    return await _command(
        request,
        principal,
        lambda uow: handlers.replace_card(
            uow, body, _clock(request), member_id=member_id, vault=_vault(request)
        ),
        views.card_replaced_answer,
        status_code=201,
        body=_fingerprinted(request, body, "card_number"),
    )


# --- enrolments -------------------------------------------------------------------------------


@members_router.post("/members/{member_id}/enrollments", status_code=201, response_model=EnrollmentCreated)
async def enroll(
    request: Request, member_id: uuid.UUID, body: EnrollmentIn, principal: Writer
) -> JSONResponse:
    """Staff and supervisors enrol from today on; only a supervisor may record a ``paper``
    enrolment paid earlier (403 ``supervisor_required`` for anyone else), since it is the one
    way to start cover before the day it is recorded."""
    if body.paper is not None and principal.role is not Role.SUPERVISOR:
        raise ProblemError(
            403,
            "Forbidden",
            "only a supervisor may record a paper enrolment paid on an earlier day",
            code="supervisor_required",
        )
    return await _command(
        request,
        principal,
        lambda uow: handlers.enroll(
            uow, body, _clock(request), member_id=member_id, recorded_by=principal.subject
        ),
        views.enrollment_created,
        status_code=201,
        body=body,
    )


@members_router.get("/members/{member_id}/enrollments")
async def member_enrollments(request: Request, member_id: uuid.UUID, principal: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        found = await views.member_detail(
            conn, _vault(request), member_id, with_receipts=principal.role in WRITERS
        )
    if found is None:
        raise _not_found("member", member_id)
    return {"member_id": str(member_id), "items": found["enrollments"]}


@members_router.post("/members/{member_id}/enrollments/{enrollment_id}/cancel")
async def cancel_enrollment(
    request: Request,
    member_id: uuid.UUID,
    enrollment_id: uuid.UUID,
    principal: Writer,
    body: Annotated[EnrollmentCancelIn | None, Body()] = None,
) -> JSONResponse:
    command = body or EnrollmentCancelIn()
    return await _command(
        request,
        principal,
        lambda uow: handlers.cancel_enrollment(
            uow, command, _clock(request), member_id=member_id, enrollment_id=enrollment_id
        ),
        views.enrollment_cancelled,
        status_code=200,
        body=command,
    )


# --- injury reports ---------------------------------------------------------------------------


@members_router.post("/members/{member_id}/injury-reports", status_code=202, response_model=ReportAccepted)
async def report_injury(
    request: Request, member_id: uuid.UUID, body: InjuryReportIn, principal: Writer
) -> JSONResponse:
    return await _command(
        request,
        principal,
        lambda uow: handlers.report_injury(
            uow, body, _clock(request), member_id=member_id, vault=_vault(request)
        ),
        views.report_accepted,
        status_code=202,
        body=_fingerprinted(request, body, "description", "diagnosis", "hospital"),
        # The hot intake: a report writes only its own new stream and rows, so under load
        # reports share transactions (shared/group_commit.py).
        grouped=True,
    )


@members_router.get("/members/{member_id}/injury-reports")
async def member_injury_reports(request: Request, member_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    """The reports without their health details."""
    async with _read(request) as conn:
        if not await views.member_exists(conn, member_id):
            raise _not_found("member", member_id)
        items = await views.member_injury_reports(conn, member_id)
    return {"member_id": str(member_id), "items": items}


reports_router = APIRouter(tags=["injury reports"])


@reports_router.get("/injury-reports/{report_id}")
async def get_injury_report(request: Request, report_id: uuid.UUID, principal: Anyone) -> dict[str, Any]:
    """One report with its health details and what the claims service made of it: staff and
    supervisors only, every attempt (a refused one too) in the audit trail first."""
    return await views.injury_report_detail(
        _runtime(request).engine, _audit(request), _vault(request), principal, report_id
    )


audit_router = APIRouter(tags=["audit"])


@audit_router.get("/audit")
async def injury_details_audit(
    request: Request,
    _: Supervisor,
    report_id: uuid.UUID | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Every attempt to read an injury report's health details, allowed or refused, oldest first."""
    async with _read(request) as conn:
        return await views.injury_details_audit(conn, report_id=report_id, limit=limit, offset=offset)


# --- plan catalogue ---------------------------------------------------------------------------

plans_router = APIRouter(tags=["plans"])


@plans_router.get("/plans")
async def list_plans(request: Request, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        return {"items": [views.plan_answer(p) for p in await views.catalogue(conn)]}


@plans_router.get("/plans/{code}")
async def get_plan(request: Request, code: PlanCode, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        plan = await views.plan_by_code(conn, code)
    if plan is None:
        raise _not_found("plan", code)
    return views.plan_answer(plan)


@plans_router.put("/plans/{code}")
async def define_plan(request: Request, code: PlanCode, body: PlanIn, principal: Writer) -> JSONResponse:
    """Create or change a catalogue plan; emits ``PlanDefined`` when something changed."""
    # As the catalogue's own type: the domain compares plans, and a PlanIn never equals a Plan.
    plan = Plan.model_validate(body.model_dump())
    return await _command(
        request,
        principal,
        lambda uow: handlers.define_plan(uow, plan, code=code),
        views.plan_defined_answer,
        status_code=200,
        body=body,
    )


# --- statistics -------------------------------------------------------------------------------

statistics_router = APIRouter(tags=["statistics"])


@statistics_router.get("/statistics/enrollments")
async def enrollment_statistics(
    request: Request,
    _: Reader,
    year: Annotated[int, Query(ge=1900, le=9999)],
    union_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Shares and enrolments per plan whose coverage starts in ``year`` (optionally under a union)."""
    async with _read(request) as conn:
        return await views.enrollment_statistics(conn, year=year, union_id=union_id)


ROUTERS = (unions_router, members_router, reports_router, audit_router, plans_router, statistics_router)
