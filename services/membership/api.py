"""HTTP API (docs/DESIGN.md §4), under /v1. Every route names the roles it admits.

Request bodies check shapes (types, lengths, enums, dates as YYYY-MM-DD); the business rules live
in ``domain``. Writes go through ``runtime.command`` (one transaction, retried on version
conflicts, ``Idempotency-Key`` replay). Reads query the read models (``views``).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, BeforeValidator, Field, StrictBool, StrictInt
from sqlalchemy.ext.asyncio import AsyncConnection

from services.membership import domain, handlers, views
from services.membership.vault import InjuryDetails, Vault
from shared.aggregate import NotFound
from shared.auth import READERS, WRITERS, Principal, Role, require
from shared.contracts.common import Gender, InjurySeverity
from shared.contracts.membership import LeaveReason, UnionLevel
from shared.contracts.plans import Plan
from shared.requests import (
    NO_NUL,
    Code,
    Limit,
    LongText,
    Money,
    Offset,
    QueryText,
    RequestBody,
    Secret,
    Text,
    chars,
    items,
)
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork

# --- shapes -----------------------------------------------------------------------------------

_ISO_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def _iso_date_only(value: Any) -> Any:
    """JSON dates are 'YYYY-MM-DD' strings: no timestamps, no datetimes, no numbers."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str) or not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


Day = Annotated[date, BeforeValidator(_iso_date_only)]


class UnionIn(RequestBody):
    name: Text
    level: UnionLevel
    parent_id: uuid.UUID | None = None


class MemberIn(RequestBody):
    union_id: uuid.UUID
    full_name: Annotated[str, chars(100), NO_NUL]
    gender: Gender
    birth_date: Day
    national_id: Secret
    phone: Secret | None = None
    joined_on: Day | None = None
    employer: Text | None = None


class LookupIn(RequestBody):
    national_id: Secret


class TransferIn(RequestBody):
    to_union_id: uuid.UUID
    transferred_on: Day | None = None


class LeaveIn(RequestBody):
    reason: LeaveReason
    left_on: Day | None = None


class CardIn(RequestBody):
    card_number: Secret
    issued_on: Day | None = None


class CardCancelIn(RequestBody):
    cancelled_on: Day | None = None
    reason: Text | None = None


class CardReplaceIn(RequestBody):
    card_number: Secret
    replaced_on: Day | None = None


class EnrollmentIn(RequestBody):
    plan_code: Code
    # The upper bound only keeps the number in a database integer; plans set no maximum yet.
    shares: Annotated[StrictInt, Field(ge=1, le=10_000)]
    starts_on: Day
    price_level: Money | None = None
    ends_on: Day | None = None


class EnrollmentCancelIn(RequestBody):
    cancelled_on: Day | None = None
    reason: Text | None = None


class InjuryReportIn(RequestBody):
    occurred_on: Day
    work_related: StrictBool
    description: LongText
    diagnosis: LongText
    hospital: Text | None = None
    traffic_accident: StrictBool = False
    severity: InjurySeverity = InjurySeverity.INJURY


class PlanIn(Plan):
    """A plan as staff send it: the catalogue's shape with every string and list bounded (a
    2 MB name used to become an event Kafka refuses)."""

    name: Text
    price_levels: Annotated[list[Money], items(20)] = Field(default_factory=list)
    genders: Annotated[list[Gender], items(2)] | None = None
    term_months: int = Field(default=12, ge=1, le=60)
    min_age: int | None = Field(default=None, ge=0, le=150)
    max_age: int | None = Field(default=None, ge=0, le=150)
    waiting_days: int = Field(default=0, ge=0, le=3660)
    reduced_benefit_until_days: int = Field(default=0, ge=0, le=3660)
    reduced_benefit_amount: Money | None = None
    benefit_per_share: Money | None = None
    max_benefit: Money | None = None


class UnionCreated(BaseModel):
    union_id: str


class MemberCreated(BaseModel):
    member_id: str


class CardAnswer(BaseModel):
    card_last4: str
    issued_on: date
    replaced_card_last4: str | None = None


class EnrollmentCreated(BaseModel):
    enrollment_id: str
    plan_code: str
    shares: int
    starts_on: date
    ends_on: date


class ReportAccepted(BaseModel):
    report_id: str
    member_id: str
    member_version: int


# --- plumbing ---------------------------------------------------------------------------------

Writer = Annotated[Principal, Depends(require(*WRITERS))]
Reader = Annotated[Principal, Depends(require(*READERS))]
#: Health data of injury reports: staff and supervisors only, not integrators.
HealthReader = Annotated[Principal, Depends(require(Role.STAFF, Role.SUPERVISOR))]
PlanCode = Annotated[str, Path(min_length=1, max_length=64)]

Work = Callable[[UnitOfWork], Any]


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


def _today(request: Request) -> date:
    return _runtime(request).clock()


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
    request: Request, principal: Principal, work: Work, *, status_code: int, body: Any
) -> JSONResponse:
    # A command that still loses the race after runtime.command's retries is answered 409
    # `concurrent_update` by the shared problem handlers (shared/http.py).
    return await _runtime(request).command(request, principal, work, status_code=status_code, body=body)


def _not_found(what: str, ident: object) -> NotFound:
    return NotFound(f"{what} {ident} not found")


# --- unions -----------------------------------------------------------------------------------

unions_router = APIRouter(tags=["unions"])


@unions_router.post("/unions", status_code=201, response_model=UnionCreated)
async def register_union(request: Request, body: UnionIn, principal: Writer) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.register_union(
            uow, name=body.name, level=body.level, parent_id=str(body.parent_id) if body.parent_id else None
        )

    return await _command(request, principal, work, status_code=201, body=body)


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
    today = _today(request)

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.join_member(
            uow,
            _vault(request),
            union_id=str(body.union_id),
            full_name=body.full_name,
            gender=body.gender,
            birth_date=body.birth_date,
            national_id=body.national_id,
            phone=body.phone,
            joined_on=body.joined_on,
            employer=body.employer,
            today=today,
        )

    digest_body = _fingerprinted(request, body, "national_id", "phone")
    return await _command(request, principal, work, status_code=201, body=digest_body)


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
    national_id = domain.parse_national_id(body.national_id)
    async with _read(request) as conn:
        member_id = await _vault(request).member_with_national_id(conn, national_id)
        found = await views.member_detail(conn, _vault(request), uuid.UUID(member_id)) if member_id else None
    if found is None:
        raise NotFound("no member with this national_id", field="national_id")
    return found


@members_router.get("/members/{member_id}")
async def get_member(request: Request, member_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        found = await views.member_detail(conn, _vault(request), member_id)
    if found is None:
        raise _not_found("member", member_id)
    return found


@members_router.get("/members/{member_id}/timeline")
async def member_timeline(request: Request, member_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        if not await views.member_exists(conn, member_id):
            raise _not_found("member", member_id)
        items = await views.timeline(conn, member_id)
    return {"member_id": str(member_id), "items": items}


@members_router.post("/members/{member_id}/transfer")
async def transfer_member(
    request: Request, member_id: uuid.UUID, body: TransferIn, principal: Writer
) -> JSONResponse:
    today = _today(request)

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.transfer_member(
            uow,
            member_id=str(member_id),
            to_union_id=str(body.to_union_id),
            transferred_on=body.transferred_on,
            today=today,
        )

    return await _command(request, principal, work, status_code=200, body=body)


@members_router.post("/members/{member_id}/leave")
async def member_leaves(
    request: Request, member_id: uuid.UUID, body: LeaveIn, principal: Writer
) -> JSONResponse:
    today = _today(request)

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.leave(
            uow, member_id=str(member_id), reason=body.reason, left_on=body.left_on, today=today
        )

    return await _command(request, principal, work, status_code=200, body=body)


# --- Jing card --------------------------------------------------------------------------------


@members_router.post("/members/{member_id}/card", status_code=201, response_model=CardAnswer)
async def issue_card(request: Request, member_id: uuid.UUID, body: CardIn, principal: Writer) -> JSONResponse:
    today = _today(request)

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.issue_card(
            uow,
            _vault(request),
            member_id=str(member_id),
            card_number=body.card_number,
            issued_on=body.issued_on,
            today=today,
        )

    digest_body = _fingerprinted(request, body, "card_number")
    return await _command(request, principal, work, status_code=201, body=digest_body)


@members_router.post("/members/{member_id}/card/cancel")
async def cancel_card(
    request: Request,
    member_id: uuid.UUID,
    principal: Writer,
    body: Annotated[CardCancelIn | None, Body()] = None,
) -> JSONResponse:
    today = _today(request)
    given = body or CardCancelIn()

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.cancel_card(
            uow, member_id=str(member_id), cancelled_on=given.cancelled_on, reason=given.reason, today=today
        )

    return await _command(request, principal, work, status_code=200, body=given)


@members_router.post("/members/{member_id}/card/replace", status_code=201, response_model=CardAnswer)
async def replace_card(
    request: Request, member_id: uuid.UUID, body: CardReplaceIn, principal: Writer
) -> JSONResponse:
    today = _today(request)

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.replace_card(
            uow,
            _vault(request),
            member_id=str(member_id),
            card_number=body.card_number,
            replaced_on=body.replaced_on,
            today=today,
        )

    digest_body = _fingerprinted(request, body, "card_number")
    return await _command(request, principal, work, status_code=201, body=digest_body)


# --- enrolments -------------------------------------------------------------------------------


@members_router.post("/members/{member_id}/enrollments", status_code=201, response_model=EnrollmentCreated)
async def enroll(
    request: Request, member_id: uuid.UUID, body: EnrollmentIn, principal: Writer
) -> JSONResponse:
    today = _today(request)

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.enroll(
            uow,
            member_id=str(member_id),
            plan_code=body.plan_code,
            shares=body.shares,
            starts_on=body.starts_on,
            price_level=body.price_level,
            ends_on=body.ends_on,
            today=today,
        )

    return await _command(request, principal, work, status_code=201, body=body)


@members_router.get("/members/{member_id}/enrollments")
async def member_enrollments(request: Request, member_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        found = await views.member_detail(conn, _vault(request), member_id)
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
    today = _today(request)
    given = body or EnrollmentCancelIn()

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.cancel_enrollment(
            uow,
            member_id=str(member_id),
            enrollment_id=str(enrollment_id),
            cancelled_on=given.cancelled_on,
            reason=given.reason,
            today=today,
        )

    return await _command(request, principal, work, status_code=200, body=given)


# --- injury reports ---------------------------------------------------------------------------


@members_router.post("/members/{member_id}/injury-reports", status_code=202, response_model=ReportAccepted)
async def report_injury(
    request: Request, member_id: uuid.UUID, body: InjuryReportIn, principal: Writer
) -> JSONResponse:
    today = _today(request)

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.report_injury(
            uow,
            _vault(request),
            member_id=str(member_id),
            occurred_on=body.occurred_on,
            work_related=body.work_related,
            details=InjuryDetails(body.description, body.diagnosis, body.hospital),
            traffic_accident=body.traffic_accident,
            severity=body.severity,
            today=today,
        )

    digest_body = _fingerprinted(request, body, "description", "diagnosis", "hospital")
    return await _command(request, principal, work, status_code=202, body=digest_body)


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
async def get_injury_report(request: Request, report_id: uuid.UUID, _: HealthReader) -> dict[str, Any]:
    """One report with its health details and what the claims service made of it."""
    async with _read(request) as conn:
        found = await views.injury_report_detail(conn, _vault(request), report_id)
    if found is None:
        raise _not_found("injury report", report_id)
    return found


# --- plan catalogue ---------------------------------------------------------------------------

plans_router = APIRouter(tags=["plans"])


@plans_router.get("/plans")
async def list_plans(request: Request, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        return {"items": [p.model_dump(mode="json") for p in await handlers.catalogue(conn)]}


@plans_router.get("/plans/{code}")
async def get_plan(request: Request, code: PlanCode, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        plan = await handlers.plan_by_code(conn, code)
    if plan is None:
        raise _not_found("plan", code)
    return plan.model_dump(mode="json")


@plans_router.put("/plans/{code}")
async def define_plan(request: Request, code: PlanCode, body: PlanIn, principal: Writer) -> JSONResponse:
    """Create or change a catalogue plan; emits ``PlanDefined`` when something changed."""

    # As the catalogue's own type: the domain compares plans, and a PlanIn never equals a Plan.
    plan = Plan.model_validate(body.model_dump())

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return await handlers.define_plan(uow, code, plan)

    return await _command(request, principal, work, status_code=200, body=body)


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


ROUTERS = (unions_router, members_router, reports_router, plans_router, statistics_router)
