"""HTTP API of the activities service (docs/DESIGN.md §4, the activities table), under /v1.

Thin routes: a role, the body (the command), ``runtime.command`` for writes, ``views`` for reads.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncConnection

from services.activities import handlers, schemas, views
from services.activities.handlers import Now
from services.activities.residents import Residents
from shared.aggregate import NotFound
from shared.auth import READERS, WRITERS, Principal, Role, require
from shared.contracts.activities import ActivityKind, RegistrationStatus
from shared.requests import Day, Limit, Offset
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork

Writer = Annotated[Principal, Depends(require(*WRITERS))]
Reader = Annotated[Principal, Depends(require(*READERS))]
#: Residents' names and phones: staff and supervisors, not integrators.
ContactReader = Annotated[Principal, Depends(require(Role.STAFF, Role.SUPERVISOR))]
Work = Callable[[UnitOfWork], Awaitable[dict[str, Any]]]

router = APIRouter(tags=["activities"])


def _runtime(request: Request) -> ServiceRuntime:
    runtime: ServiceRuntime = request.app.state.runtime
    return runtime


def _clock(request: Request) -> Now:
    clock: Now = request.app.state.clock
    return clock


def _residents(request: Request) -> Residents:
    residents: Residents = request.app.state.residents
    return residents


@asynccontextmanager
async def _read(request: Request) -> AsyncIterator[AsyncConnection]:
    async with _runtime(request).engine.connect() as conn:
        yield conn


async def _command(
    request: Request, principal: Principal, work: Work, *, status_code: int = 200, body: Any = None
) -> JSONResponse:
    return await _runtime(request).command(request, principal, work, status_code=status_code, body=body)


# --- activities -------------------------------------------------------------------------------


@router.post("/activities", status_code=201, response_model=schemas.ActivityCreated)
async def schedule_activity(
    request: Request, body: schemas.ScheduleActivity, principal: Writer
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        done = await handlers.schedule(uow, body, _clock(request))
        return views.created_answer(done.activity, done.notified)

    return await _command(request, principal, work, status_code=201, body=body)


@router.get("/activities", response_model=schemas.ActivityList)
async def list_activities(
    request: Request,
    _: Reader,
    kind: ActivityKind | None = None,
    union_id: uuid.UUID | None = None,
    starts_from: Annotated[Day | None, Query()] = None,
    limit: Limit = 100,
    offset: Offset = 0,
) -> dict[str, Any]:
    async with _read(request) as conn:
        items = await views.activities(
            conn, kind=kind, union_id=union_id, starts_from=starts_from, limit=limit, offset=offset
        )
    return {"items": items}


@router.get("/activities/{activity_id}", response_model=schemas.ActivityOut)
async def get_activity(request: Request, activity_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        found = await views.activity(conn, activity_id)
    if found is None:
        raise NotFound(f"activity {activity_id} not found")
    return found


@router.patch("/activities/{activity_id}", response_model=schemas.ActivityOut)
async def change_activity(
    request: Request, activity_id: uuid.UUID, body: schemas.ChangeActivity, principal: Writer
) -> JSONResponse:
    """Change title, times, venue, capacity or the registration deadline; a larger capacity
    promotes from the waitlist at once."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        await handlers.change(uow, activity_id, body, _clock(request))
        shaped = await views.activity(uow.conn, activity_id)
        assert shaped is not None
        return shaped

    return await _command(request, principal, work, body=body)


@router.post("/activities/{activity_id}/cancel")
async def cancel_activity(
    request: Request,
    activity_id: uuid.UUID,
    principal: Writer,
    body: Annotated[schemas.CancelActivity | None, Body()] = None,
) -> JSONResponse:
    """Cancel the activity; every registrant is told by a ``RegistrationCancelled`` event."""
    command = body or schemas.CancelActivity()

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        cancelled = await handlers.cancel(uow, activity_id, command, _clock(request))
        return {"status": "cancelled", "cancelled_registration_ids": [str(r) for r in cancelled]}

    return await _command(request, principal, work, body=command)


@router.post("/activities/{activity_id}/registration/close")
async def close_registration(request: Request, activity_id: uuid.UUID, principal: Writer) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        await handlers.close_registration(uow, activity_id, _clock(request))
        return {"activity_id": str(activity_id), "registration_window_closed": True}

    return await _command(request, principal, work)


# --- registrations ----------------------------------------------------------------------------


@router.post(
    "/activities/{activity_id}/registrations", status_code=201, response_model=schemas.RegistrationAnswer
)
async def register(
    request: Request, activity_id: uuid.UUID, body: schemas.Register, principal: Writer
) -> JSONResponse:
    residents = _residents(request)

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        activity, outcome = await handlers.register(uow, activity_id, body, _clock(request), residents)
        return views.registration_answer(activity, outcome)

    # What the idempotency record hashes: never a resident's name or phone in a plain hash.
    digest = body.model_dump(mode="json")
    if body.resident is not None:
        digest["resident"] = {
            "ref": residents.ref(body.resident.phone),
            "name": residents.fingerprint(body.resident.full_name),
        }
    return await _command(request, principal, work, status_code=201, body=digest)


@router.get("/activities/{activity_id}/registrations", response_model=schemas.RegistrationList)
async def list_registrations(
    request: Request, activity_id: uuid.UUID, _: Reader, status: RegistrationStatus | None = None
) -> dict[str, Any]:
    async with _read(request) as conn:
        if await views.activity(conn, activity_id) is None:
            raise NotFound(f"activity {activity_id} not found")
        items = await views.registrations(conn, activity_id, status=status.value if status else None)
    return {"items": items}


@router.post(
    "/activities/{activity_id}/registrations/{registration_id}/cancel", response_model=schemas.CancelAnswer
)
async def cancel_registration(
    request: Request, activity_id: uuid.UUID, registration_id: uuid.UUID, principal: Writer
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        promoted = await handlers.cancel_registration(uow, activity_id, registration_id, _clock(request))
        return views.cancel_answer(promoted)

    return await _command(request, principal, work)


@router.post("/activities/{activity_id}/registrations/{registration_id}/check-in")
async def check_in(
    request: Request, activity_id: uuid.UUID, registration_id: uuid.UUID, principal: Writer
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        activity = await handlers.check_in(uow, activity_id, registration_id, _clock(request))
        return views.registration_state(activity, registration_id)

    return await _command(request, principal, work)


@router.post("/activities/{activity_id}/registrations/{registration_id}/feedback", status_code=201)
async def submit_feedback(
    request: Request,
    activity_id: uuid.UUID,
    registration_id: uuid.UUID,
    body: schemas.Feedback,
    principal: Writer,
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        await handlers.submit_feedback(uow, activity_id, registration_id, body, _clock(request))
        return {"registration_id": str(registration_id), "rating": body.rating}

    return await _command(request, principal, work, status_code=201, body=body)


@router.get(
    "/activities/{activity_id}/registrations/{registration_id}/resident",
    response_model=schemas.ResidentContact,
)
async def resident_contact(
    request: Request, activity_id: uuid.UUID, registration_id: uuid.UUID, _: ContactReader
) -> dict[str, Any]:
    """A resident's name and masked phone, for the check-in list (staff only)."""
    async with _read(request) as conn:
        contact = await _residents(request).contact(conn, registration_id)
        registered = [
            r
            for r in await views.registrations(conn, activity_id)
            if r["registration_id"] == str(registration_id)
        ]
    if contact is None or not registered:
        raise NotFound(f"no resident registration {registration_id} on activity {activity_id}")
    return {
        "registration_id": str(registration_id),
        "resident_ref": contact.resident_ref,
        "full_name": contact.full_name,
        "phone": contact.masked_phone,
    }


@router.get("/activities/{activity_id}/feedback-summary", response_model=schemas.FeedbackSummary)
async def feedback_summary(request: Request, activity_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        if await views.activity(conn, activity_id) is None:
            raise NotFound(f"activity {activity_id} not found")
        return await views.feedback_summary(conn, activity_id)


# --- volunteers -------------------------------------------------------------------------------


@router.post("/activities/{activity_id}/volunteers", status_code=201)
async def assign_volunteer(
    request: Request, activity_id: uuid.UUID, body: schemas.AssignVolunteer, principal: Writer
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        await handlers.assign_volunteer(uow, activity_id, body, _clock(request))
        return {"activity_id": str(activity_id), "member_id": str(body.member_id), "role": body.role}

    return await _command(request, principal, work, status_code=201, body=body)


@router.post("/activities/{activity_id}/volunteers/{member_id}/release")
async def release_volunteer(
    request: Request, activity_id: uuid.UUID, member_id: uuid.UUID, principal: Writer
) -> JSONResponse:
    async def work(uow: UnitOfWork) -> dict[str, Any]:
        await handlers.release_volunteer(uow, activity_id, member_id, _clock(request))
        return {"activity_id": str(activity_id), "member_id": str(member_id), "released": True}

    return await _command(request, principal, work)


# --- interest, members, statistics ------------------------------------------------------------


@router.post("/interests", status_code=201, response_model=schemas.InterestCreated)
async def register_interest(
    request: Request, body: schemas.RegisterInterest, principal: Writer
) -> JSONResponse:
    """When the next activity of ``kind`` is scheduled, ``InterestedMembersNotified`` names this."""

    async def work(uow: UnitOfWork) -> dict[str, Any]:
        interest = await handlers.register_interest(uow, body, _clock(request))
        return {"interest_id": interest.id}

    return await _command(request, principal, work, status_code=201, body=body)


@router.get("/members/{member_id}/registrations", response_model=schemas.MemberRegistrations)
async def member_registrations(request: Request, member_id: uuid.UUID, _: Reader) -> dict[str, Any]:
    async with _read(request) as conn:
        return {"items": await views.member_registrations(conn, member_id)}


@router.get("/statistics/participation", response_model=schemas.Statistics)
async def participation(
    request: Request,
    _: Reader,
    by: Literal["activity", "union", "year"] = "activity",
    year: Annotated[int | None, Query(ge=1900, le=9999)] = None,
    union_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """Registrations, confirmed places, attendance, and waitlist demand (``turned_away``: those
    who waited and never got a place) per activity, per union or per year."""
    async with _read(request) as conn:
        items = await views.participation(conn, by=by, year=year, union_id=union_id)
    return {"by": by, "year": year, "items": items}
