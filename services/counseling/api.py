"""HTTP API of the counseling service (docs/DESIGN.md §4, Counseling), under /v1.

Thin: a role dependency, the body (the command), ``runtime.command`` for writes and ``views``
for reads. Who-may rules that depend on the person (the assigned counsellor) are in the domain.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse

from services.counseling import handlers, views
from services.counseling.schemas import BookingIn, CancelIn, CompleteIn, CounselorIn, NoShowIn, SlotIn
from services.counseling.vault import ClientVault, NotesVault
from shared.audit import AuditTrail
from shared.auth import Principal, Role, require
from shared.clock import Clock
from shared.requests import Day, Instant, Limit, Offset
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork

router = APIRouter(tags=["counseling"])

Staff = Annotated[Principal, Depends(require(Role.STAFF, Role.SUPERVISOR))]
StaffOrCounselor = Annotated[Principal, Depends(require(Role.STAFF, Role.SUPERVISOR, Role.COUNSELOR))]
Counselor = Annotated[Principal, Depends(require(Role.COUNSELOR))]
Supervisor = Annotated[Principal, Depends(require(Role.SUPERVISOR))]
Reader = Annotated[Principal, Depends(require(Role.STAFF, Role.SUPERVISOR, Role.INTEGRATOR, Role.COUNSELOR))]
#: Anybody with a token: the notes route audits and refuses by itself.
Anyone = Annotated[Principal, Depends(require(*Role))]

JSON = dict[str, Any]
_CLIENT_REF = re.compile(r"^[0-9a-f]{64}$")


def _rt(request: Request) -> ServiceRuntime:
    rt: ServiceRuntime = request.app.state.runtime
    return rt


def _clock(request: Request) -> Clock:
    clock: Clock = request.app.state.clock
    return clock


def _clients(request: Request) -> ClientVault:
    vault: ClientVault = request.app.state.clients
    return vault


def _notes(request: Request) -> NotesVault:
    vault: NotesVault = request.app.state.notes
    return vault


async def _command(
    request: Request,
    principal: Principal,
    work: Callable[[UnitOfWork], Awaitable[JSON]],
    *,
    status_code: int,
    body: Any = None,
) -> JSONResponse:
    return await _rt(request).command(request, principal, work, status_code=status_code, body=body)


# --- counsellors -------------------------------------------------------------------------------------


@router.post("/counselors", status_code=201)
async def onboard_counselor(request: Request, body: CounselorIn, p: Staff) -> JSONResponse:
    async def work(uow: UnitOfWork) -> JSON:
        return views.counselor_answer(await handlers.onboard_counselor(uow, body, _clock(request)))

    return await _command(request, p, work, status_code=201, body=body)


@router.post("/counselors/{counselor_id}/deactivate")
async def deactivate_counselor(request: Request, counselor_id: uuid.UUID, p: Staff) -> JSONResponse:
    async def work(uow: UnitOfWork) -> JSON:
        return views.counselor_answer(await handlers.deactivate_counselor(uow, counselor_id, _clock(request)))

    return await _command(request, p, work, status_code=200)


@router.get("/counselors")
async def list_counselors(request: Request, _: Reader, active: bool | None = None) -> JSON:
    async with _rt(request).engine.connect() as conn:
        return {"items": await views.counselors(conn, active=active)}


@router.get("/counselors/{counselor_id}")
async def get_counselor(request: Request, counselor_id: uuid.UUID, _: Reader) -> JSON:
    async with _rt(request).engine.connect() as conn:
        return await views.counselor(conn, counselor_id)


@router.post("/counselors/{counselor_id}/slots", status_code=201)
async def publish_slot(
    request: Request, counselor_id: uuid.UUID, body: SlotIn, p: StaffOrCounselor
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> JSON:
        published = await handlers.publish_slot(uow, counselor_id, body, _clock(request), actor=p)
        return views.slot_answer(published.slot, published.counselor)

    return await _command(request, p, work, status_code=201, body=body)


@router.get("/counselors/{counselor_id}/slots")
async def list_slots(
    request: Request,
    counselor_id: uuid.UUID,
    _: Reader,
    since: Annotated[Instant | None, Query(description="only slots ending after this instant")] = None,
    free: bool | None = None,
) -> JSON:
    async with _rt(request).engine.connect() as conn:
        await views.counselor(conn, counselor_id)  # 404 for an unknown counsellor
        return {"items": await views.slots(conn, counselor_id, since=since, free=free)}


# --- appointments ------------------------------------------------------------------------------------


@router.post("/appointments", status_code=201)
async def book(request: Request, body: BookingIn, p: Staff) -> JSONResponse:
    async def work(uow: UnitOfWork) -> JSON:
        return views.appointment_answer(
            await handlers.book(uow, body, _clock(request), clients=_clients(request))
        )

    return await _command(request, p, work, status_code=201, body=body)


@router.post("/appointments/{appointment_id}/complete")
async def complete(
    request: Request, appointment_id: uuid.UUID, body: CompleteIn, p: Counselor
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> JSON:
        done = await handlers.complete(
            uow, appointment_id, body, _clock(request), actor=p, notes=_notes(request)
        )
        return views.appointment_answer(done)

    return await _command(request, p, work, status_code=200, body=body)


@router.post("/appointments/{appointment_id}/cancel")
async def cancel(
    request: Request,
    appointment_id: uuid.UUID,
    p: StaffOrCounselor,
    body: Annotated[CancelIn | None, Body()] = None,
) -> JSONResponse:
    command = body or CancelIn()

    async def work(uow: UnitOfWork) -> JSON:
        done = await handlers.cancel(
            uow, appointment_id, command, _clock(request), actor=p, clients=_clients(request)
        )
        return views.appointment_answer(done)

    return await _command(request, p, work, status_code=200, body=command)


@router.post("/appointments/{appointment_id}/no-show")
async def no_show(
    request: Request,
    appointment_id: uuid.UUID,
    p: StaffOrCounselor,
    body: Annotated[NoShowIn | None, Body()] = None,
) -> JSONResponse:
    command = body or NoShowIn()

    async def work(uow: UnitOfWork) -> JSON:
        done = await handlers.no_show(
            uow, appointment_id, command, _clock(request), actor=p, clients=_clients(request)
        )
        return views.appointment_answer(done)

    return await _command(request, p, work, status_code=200, body=command)


@router.get("/appointments")
async def list_appointments(
    request: Request,
    p: Reader,
    counselor_id: uuid.UUID | None = None,
    client_ref: Annotated[str | None, Query(pattern=_CLIENT_REF.pattern)] = None,
    status: Annotated[str | None, Query(pattern="^(booked|cancelled|completed|no_show)$")] = None,
    on: Annotated[Day | None, Query(description="Beijing date of the session")] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> JSON:
    """A counsellor sees only their own appointments."""
    async with _rt(request).engine.connect() as conn:
        items = await views.appointments(
            conn,
            counselor_id=counselor_id,
            counselor_subject=p.subject if p.role is Role.COUNSELOR else None,
            client_ref=client_ref,
            status=status,
            on=on,
            limit=limit,
            offset=offset,
        )
    return {"items": items}


@router.get("/appointments/{appointment_id}")
async def get_appointment(request: Request, appointment_id: uuid.UUID, _: Reader) -> JSON:
    async with _rt(request).engine.connect() as conn:
        return await views.appointment(conn, appointment_id)


@router.get("/appointments/{appointment_id}/notes")
async def read_notes(request: Request, appointment_id: uuid.UUID, p: Anyone) -> JSON:
    trail: AuditTrail = request.app.state.audit
    return await views.session_notes(_rt(request).engine, trail, _notes(request), p, appointment_id)


@router.get("/audit")
async def audit(
    request: Request,
    _: Supervisor,
    appointment_id: uuid.UUID | None = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> JSON:
    """Every read of session notes, allowed or refused, oldest first."""
    async with _rt(request).engine.connect() as conn:
        return await views.audit(conn, appointment_id=appointment_id, limit=limit, offset=offset)


# --- queries for the station ----------------------------------------------------------------------------


@router.get("/reminders")
async def reminders(
    request: Request, _: Staff, on: Annotated[Day | None, Query(description="default: tomorrow")] = None
) -> JSON:
    """Booked sessions of one Beijing day (tomorrow unless ``on`` says otherwise), to remind."""
    day = on or _clock(request)() + timedelta(days=1)
    async with _rt(request).engine.connect() as conn:
        return await views.reminders(conn, _clients(request), day)


@router.get("/no-shows")
async def no_shows(
    request: Request,
    _: Staff,
    client_ref: Annotated[str | None, Query(pattern=_CLIENT_REF.pattern)] = None,
    min_count: Annotated[int, Query(ge=0, le=1000)] = 1,
    limit: Limit = 100,
) -> JSON:
    """No-shows per client (by ``client_ref``), most first."""
    async with _rt(request).engine.connect() as conn:
        return {"items": await views.no_shows(conn, client_ref=client_ref, min_count=min_count, limit=limit)}


@router.get("/statistics")
async def statistics(
    request: Request,
    _: Reader,
    since: Annotated[Day | None, Query(alias="from")] = None,
    until: Annotated[Day | None, Query(alias="to")] = None,
) -> JSON:
    """Anonymous counts: sessions per month, no-show rate, residents' share of the clients."""
    async with _rt(request).engine.connect() as conn:
        return await views.statistics(conn, since=since, until=until)
