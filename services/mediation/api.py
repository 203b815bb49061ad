"""HTTP API under /v1 (docs/DESIGN.md §4, mediation: a fixed contract; fields are only added).

Thin routes: a role dependency, the body (the command), ``runtime.command`` for writes (one
transaction, retried on a version conflict, ``Idempotency-Key`` replay), ``views`` for reads.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncConnection

from services.mediation import handlers, views
from services.mediation.handlers import Actor, Forbidden
from services.mediation.schemas import (
    CancelSession,
    Close,
    ConfigureStation,
    Escalate,
    ReachAgreement,
    ReceiveCase,
    RecordFulfilment,
    RecordMinutes,
    Refer,
    ScheduleSession,
    Sweep,
)
from services.mediation.vault import Vault
from shared.aggregate import NotFound
from shared.audit import AuditTrail
from shared.auth import READERS, WRITERS, Principal, Role, require
from shared.clock import Clock
from shared.contracts.mediation import Tier
from shared.requests import Limit, Offset
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork

Writer = Annotated[Principal, Depends(require(*WRITERS))]
Reader = Annotated[Principal, Depends(require(*READERS))]
#: Minutes: staff and supervisors may ask (the rule then decides); never integrators.
#: Anyone with a token may *ask* for minutes, so that every refused attempt is audited too; the
#: route itself admits only the session's mediator (staff) and supervisors.
MinutesReader = Annotated[Principal, Depends(require(*Role))]
MINUTES_ROLES = (Role.STAFF, Role.SUPERVISOR)
Supervisor = Annotated[Principal, Depends(require(Role.SUPERVISOR))]


class CaseCreated(BaseModel):
    case_id: str
    case_number: str
    mediation_deadline: date
    arbitration_limit: date


class SessionCreated(BaseModel):
    session_id: str
    room_id: str
    case_id: str


class SessionCancelledAnswer(BaseModel):
    session_id: str
    room_id: str
    case_id: str
    status: str
    version: int


class CaseState(BaseModel):
    case_id: str
    status: str
    tier: Tier
    handling_union_id: str
    version: int


class SweepAnswer(BaseModel):
    on: date
    overdue: list[str]
    limit_near: list[str]
    events_emitted: int


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def _vault(request: Request) -> Vault:
    vault: Vault = request.app.state.vault
    return vault


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def _actor(principal: Principal) -> Actor:
    return Actor(
        subject=principal.subject,
        union_id=uuid.UUID(principal.union_id) if principal.union_id else None,
        supervisor=principal.role is Role.SUPERVISOR,
    )


def _viewer(principal: Principal) -> uuid.UUID | None:
    return uuid.UUID(principal.union_id) if principal.union_id else None


@asynccontextmanager
async def _read(request: Request) -> AsyncIterator[AsyncConnection]:
    async with _runtime(request).engine.connect() as conn:
        yield conn


async def _visible_case(conn: AsyncConnection, case_id: uuid.UUID, principal: Principal) -> Any:
    row = await views.case_row(conn, case_id)
    # A case of another station is "not found" to a station's staff: ids are not to be probed.
    if row is None or not views.may_see(_viewer(principal), list(row["handled_by"])):
        raise NotFound(f"case {case_id} not found")
    return row


def _idempotency_body(request: Request, body: ReceiveCase) -> dict[str, Any]:
    """What the idempotency record hashes: the worker's name and phone as keyed fingerprints."""
    payload = body.model_dump(mode="json")
    worker = payload.get("worker")
    if worker:
        cipher = _runtime(request).cipher
        payload["worker"] = {
            k: cipher.blind_index(str(v), f"worker.{k}") if v else v for k, v in worker.items()
        }
    return payload


router = APIRouter(tags=["mediation"])


# --- cases ------------------------------------------------------------------------------------------


@router.post("/cases", status_code=201, response_model=CaseCreated)
async def receive_case(request: Request, body: ReceiveCase, principal: Writer) -> JSONResponse:
    """Receive a case at a station (a ``street`` union). The member must be known here (409
    ``member_not_known`` while their ``MemberJoined`` is on the way), the union too (409
    ``union_not_known``), and be a station (422 ``not_a_station``)."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        case = await handlers.receive_case(
            uow, body, _clock(request), vault=_vault(request), actor=_actor(principal)
        )
        return views.case_created(case)

    return await _runtime(request).command(
        request, principal, work, status_code=201, body=_idempotency_body(request, body)
    )


@router.get("/cases")
async def list_cases(
    request: Request,
    principal: Reader,
    station_id: uuid.UUID | None = None,
    member_id: uuid.UUID | None = None,
    status: Annotated[str | None, Query(pattern=r"^[a-z_]{1,40}$")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Cases the caller may see (a station's staff: those their union has handled), newest first;
    a station sees here what became of the cases it escalated."""
    async with _read(request) as conn:
        items = await views.list_cases(
            conn,
            _clock(request)(),
            viewer_union=_viewer(principal),
            station_id=station_id,
            member_id=member_id,
            status=status,
            limit=limit,
            offset=offset,
        )
    return {"items": items, "limit": limit, "offset": offset}


@router.get("/cases/{case_id}")
async def get_case(request: Request, case_id: uuid.UUID, principal: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        row = await _visible_case(conn, case_id, principal)
        return await views.case_detail(
            conn,
            row,
            _clock(request)(),
            vault=_vault(request),
            with_parties=principal.role is not Role.INTEGRATOR,
        )


@router.post("/cases/{case_id}/sessions", status_code=201, response_model=SessionCreated)
async def schedule_session(
    request: Request, case_id: uuid.UUID, body: ScheduleSession, principal: Writer
) -> JSONResponse:
    """Book the handling union's mediation room; overlapping another session there is 409
    ``room_taken``; a start more than 366 days ahead is 422 naming ``starts_at``."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        booked = await handlers.schedule_session(uow, case_id, body, _clock(request), actor=_actor(principal))
        return views.session_created(booked)

    return await _runtime(request).command(request, principal, work, status_code=201, body=body)


@router.post(
    "/cases/{case_id}/sessions/{session_id}/cancel", status_code=200, response_model=SessionCancelledAnswer
)
async def cancel_session(
    request: Request,
    case_id: uuid.UUID,
    session_id: uuid.UUID,
    principal: Writer,
    body: CancelSession | None = None,
) -> JSONResponse:
    """Call off one scheduled session: ``SessionCancelled``, and the room's time is free again
    (``RoomReleased``, cause ``session_cancelled``) for another session. Staff of the union
    handling the case (or whose room it is); 409 ``session_cancelled`` the second time, 409
    ``session_held`` once its minutes are recorded or its day is past; 404 for a session the case
    does not have."""
    command = body or CancelSession()

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        cancelled = await handlers.cancel_session(
            uow, case_id, session_id, command, _clock(request), vault=_vault(request), actor=_actor(principal)
        )
        return views.session_cancelled(cancelled)

    return await _runtime(request).command(request, principal, work, status_code=200, body=command)


@router.post("/cases/{case_id}/sessions/{session_id}/minutes", status_code=201, response_model=CaseState)
async def record_minutes(
    request: Request, case_id: uuid.UUID, session_id: uuid.UUID, body: RecordMinutes, principal: Writer
) -> JSONResponse:
    """Confidential: encrypted, never on Kafka or in logs; kept by the session's mediator (the
    token's subject) or a supervisor."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        case = await handlers.record_minutes(
            uow, case_id, session_id, body, vault=_vault(request), actor=_actor(principal)
        )
        return views.case_state(case)

    return await _runtime(request).command(
        request,
        principal,
        work,
        status_code=201,
        body={"minutes_sha256": _runtime(request).cipher.blind_index(body.minutes, "minutes")},
    )


@router.get("/cases/{case_id}/sessions/{session_id}/minutes")
async def read_minutes(
    request: Request, case_id: uuid.UUID, session_id: uuid.UUID, principal: MinutesReader
) -> dict[str, Any]:
    """The session's mediator and supervisors read the minutes; every attempt is audited first."""
    trail = AuditTrail(_runtime(request).engine)

    async def refused(reason: str) -> None:
        await trail.record(
            principal,
            resource_type="mediation_minutes",
            resource_id=str(session_id),
            action="read",
            allowed=False,
            reason=reason,
        )

    if principal.role not in MINUTES_ROLES:
        await refused(f"role {principal.role} may not read minutes")
        raise Forbidden(f"role {principal.role} may not read minutes", code="role_not_allowed")
    async with _read(request) as conn:
        try:
            row = await _visible_case(conn, case_id, principal)
        except NotFound:
            await refused("the case is not visible to this caller's station")
            raise
        session = await views.session_row(conn, row["case_id"], session_id)
    if session is None:
        await refused("the case has no such session")
        raise NotFound(f"session {session_id} not found")
    allowed = principal.role is Role.SUPERVISOR or session["mediator"] == principal.subject
    await trail.record(
        principal,
        resource_type="mediation_minutes",
        resource_id=str(session_id),
        action="read",
        allowed=allowed,
        reason=None if allowed else "not the session's mediator",
    )
    if not allowed:
        raise Forbidden(
            "only the session's mediator or a supervisor reads its minutes", code="not_the_mediator"
        )
    async with _read(request) as conn:
        text = await _vault(request).minutes(conn, session_id)
    if text is None:
        raise NotFound("no minutes recorded for this session")
    return {"session_id": str(session_id), "minutes": text}


@router.get("/audit")
async def audit(
    request: Request,
    _: Supervisor,
    session_id: uuid.UUID | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    """Every attempt to read minutes (allowed or refused), oldest first (supervisors)."""
    async with _read(request) as conn:
        entries = await AuditTrail.entries(
            conn,
            resource_type="mediation_minutes",
            resource_id=str(session_id) if session_id else None,
            limit=limit,
            offset=offset,
        )
    return {"items": [e.as_json() for e in entries]}


# --- outcomes -------------------------------------------------------------------------------------


@router.post("/cases/{case_id}/agreement", response_model=CaseState)
async def reach_agreement(
    request: Request, case_id: uuid.UUID, body: ReachAgreement, principal: Writer
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        case = await handlers.reach_agreement(
            uow, case_id, body, _clock(request), vault=_vault(request), actor=_actor(principal)
        )
        return views.case_state(case)

    return await _runtime(request).command(request, principal, work, status_code=200, body=body)


@router.post("/cases/{case_id}/agreement/fulfilment", response_model=CaseState)
async def record_fulfilment(
    request: Request, case_id: uuid.UUID, body: RecordFulfilment, principal: Writer
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        case = await handlers.record_fulfilment(uow, case_id, body, _clock(request), actor=_actor(principal))
        return views.case_state(case)

    return await _runtime(request).command(request, principal, work, status_code=200, body=body)


@router.post("/cases/{case_id}/employer-refused", response_model=CaseState)
async def employer_refused(
    request: Request, case_id: uuid.UUID, principal: Writer, body: Close | None = None
) -> JSONResponse:
    """The employer refused mediation: the case stays open (to be referred or escalated) and
    the worker may apply for arbitration at once."""
    command = body or Close()

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        case = await handlers.employer_refused(
            uow, case_id, command, _clock(request), vault=_vault(request), actor=_actor(principal)
        )
        return views.case_state(case)

    return await _runtime(request).command(request, principal, work, status_code=200, body=command)


@router.post("/cases/{case_id}/withdraw", response_model=CaseState)
async def withdraw(
    request: Request, case_id: uuid.UUID, principal: Writer, body: Close | None = None
) -> JSONResponse:
    command = body or Close()

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        case = await handlers.withdraw(
            uow, case_id, command, _clock(request), vault=_vault(request), actor=_actor(principal)
        )
        return views.case_state(case)

    return await _runtime(request).command(request, principal, work, status_code=200, body=command)


@router.post("/cases/{case_id}/escalate", response_model=CaseState)
async def escalate(request: Request, case_id: uuid.UUID, body: Escalate, principal: Writer) -> JSONResponse:
    """One tier up the union tree (street -> district -> municipal); above municipal: 409
    ``no_higher_tier``."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        case = await handlers.escalate(
            uow, case_id, body, _clock(request), vault=_vault(request), actor=_actor(principal)
        )
        return views.case_state(case)

    return await _runtime(request).command(request, principal, work, status_code=200, body=body)


@router.post("/cases/{case_id}/refer", response_model=CaseState)
async def refer(request: Request, case_id: uuid.UUID, body: Refer, principal: Writer) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        case = await handlers.refer(uow, case_id, body, _clock(request), actor=_actor(principal))
        return views.case_state(case)

    return await _runtime(request).command(request, principal, work, status_code=200, body=body)


# --- queues, stations, deadlines, statistics --------------------------------------------------------


@router.get("/queues/{union_id}")
async def queue(request: Request, union_id: uuid.UUID, principal: Reader) -> dict[str, Any]:
    """The cases that union handles now (a station's staff: their own union's queue only)."""
    viewer = _viewer(principal)
    if viewer is not None and viewer != union_id:
        raise Forbidden("staff of a union see their own union's queue", code="not_your_union")
    async with _read(request) as conn:
        return {"items": await views.queue(conn, union_id, _clock(request)())}


@router.put("/stations/{union_id}")
async def configure_station(
    request: Request, union_id: uuid.UUID, body: ConfigureStation, principal: Writer
) -> JSONResponse:
    """Set the station's case-number prefix (``SY`` in ``SY-2026-0042``). A prefix is one
    station's for good (its numbers were issued under it): another station's is 409
    ``prefix_taken``."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        await handlers.configure_station(uow, union_id, body, actor=_actor(principal))
        return await views.station_answer(uow.conn, union_id)

    return await _runtime(request).command(request, principal, work, status_code=200, body=body)


@router.get("/stations/{union_id}")
async def get_station(request: Request, union_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        found = await views.union(conn, union_id)
        if found is None or found[0].level != "street":
            raise NotFound(f"station {union_id} not found")
        return await views.station_answer(conn, union_id)


@router.post("/deadlines/sweep", response_model=SweepAnswer)
async def sweep(request: Request, principal: Writer, body: Sweep | None = None) -> JSONResponse:
    """Run the daily sweep for ``on`` (default today; a day after today is 422 naming ``on``):
    ``MediationDeadlinePassed`` once per overdue case, ``ArbitrationLimitNear`` once per case near
    its limit. ``overdue`` lists every active case past its deadline on that day. Staff bound to a
    union sweep the cases their union handles now; unbound staff and supervisors sweep all."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        return views.sweep_answer(
            await handlers.sweep(uow, command, _clock(request), actor=_actor(principal))
        )

    command = body or Sweep()
    return await _runtime(request).command(request, principal, work, status_code=200, body=command)


@router.get("/statistics/cases")
async def case_statistics(
    request: Request, principal: Reader, year: Annotated[int | None, Query(ge=2000, le=2100)] = None
) -> dict[str, Any]:
    """Per station and per tier: cases by category, resolution rate, median days to agreement,
    amounts agreed and recovered (paid) for workers."""
    async with _read(request) as conn:
        return await views.statistics_answer(conn, year=year, viewer_union=_viewer(principal))


@router.get("/periods")
async def legal_periods(_: Reader) -> dict[str, Any]:
    """The legal periods and the holiday calendar years this service counts with."""
    return views.periods_answer()


ROUTERS = (router,)
