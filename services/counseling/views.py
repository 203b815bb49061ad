"""Every read of the counseling service, and the shaping of its JSON answers.

Clients leave only as ``client_ref`` and ``client_kind`` (and, on the reminder list staff work
from, a resident's name and phone). Session notes leave only through ``session_notes``, which
puts the attempt on the audit trail before it decides anything else.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.counseling import domain
from services.counseling import tables as t
from services.counseling.vault import ClientVault, NotesVault
from shared.aggregate import Conflict, NotFound
from shared.audit import AuditTrail
from shared.auth import Principal
from shared.clock import beijing_day_bounds
from shared.http import ProblemError

JSON = dict[str, Any]
NOTES_RESOURCE = "appointment_notes"
READ_NOTES = "read_notes"


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


# --- lookups the handlers' rules need -------------------------------------------------------------


async def active_counselor_of(conn: AsyncConnection, subject: str) -> uuid.UUID | None:
    c = t.counselors.c
    return (
        await conn.execute(sa.select(c.counselor_id).where(c.subject == subject, c.active))
    ).scalar_one_or_none()


async def counselor_of_slot(conn: AsyncConnection, slot_id: uuid.UUID) -> uuid.UUID | None:
    return (
        await conn.execute(sa.select(t.slots.c.counselor_id).where(t.slots.c.slot_id == slot_id))
    ).scalar_one_or_none()


async def slot_taken(conn: AsyncConnection, slot_id: uuid.UUID) -> bool:
    a = t.appointments.c
    found = await conn.execute(
        sa.select(a.appointment_id).where(a.slot_id == slot_id, a.status != "cancelled")
    )
    return found.first() is not None


async def require_active_member(conn: AsyncConnection, member_id: uuid.UUID) -> None:
    active = (
        await conn.execute(sa.select(t.members.c.active).where(t.members.c.member_id == member_id))
    ).scalar_one_or_none()
    if active is None:
        raise domain.MemberNotKnown()
    if not active:
        raise Conflict(
            "this member has left the union; book them as a resident", field="member_id", code="member_left"
        )


# --- answers to commands --------------------------------------------------------------------------


def counselor_answer(counselor: domain.Counselor) -> JSON:
    return {"counselor_id": counselor.id, "active": counselor.active}


def slot_answer(slot: domain.Slot, counselor: domain.Counselor) -> JSON:
    return {
        "slot_id": str(slot.slot_id),
        "counselor_id": counselor.id,
        "starts_at": _iso(slot.starts_at),
        "ends_at": _iso(slot.ends_at),
    }


def appointment_answer(appointment: domain.Appointment) -> JSON:
    """Never the notes, a name or a phone: this answer may be replayed from the idempotency table."""
    assert appointment.starts_at is not None and appointment.status is not None
    return {
        "appointment_id": appointment.id,
        "client_ref": appointment.client_ref,
        "status": appointment.status.value,
        "slot_id": str(appointment.slot_id),
        "counselor_id": str(appointment.counselor_id),
        "starts_at": _iso(appointment.starts_at),
    }


# --- counsellors and slots --------------------------------------------------------------------------


def _counselor_row(row: sa.RowMapping) -> JSON:
    return {
        "counselor_id": str(row["counselor_id"]),
        "display_name": row["display_name"],
        "provider": row["provider"],
        "subject": row["subject"],
        "active": row["active"],
        "onboarded_on": row["onboarded_on"].isoformat(),
        "deactivated_on": row["deactivated_on"].isoformat() if row["deactivated_on"] else None,
    }


async def counselors(conn: AsyncConnection, *, active: bool | None) -> list[JSON]:
    query = sa.select(t.counselors).order_by(t.counselors.c.display_name)
    if active is not None:
        query = query.where(t.counselors.c.active == active)
    return [_counselor_row(r) for r in (await conn.execute(query)).mappings()]


async def counselor(conn: AsyncConnection, counselor_id: uuid.UUID) -> JSON:
    row = (
        (await conn.execute(sa.select(t.counselors).where(t.counselors.c.counselor_id == counselor_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"counselor {counselor_id} not found")
    return _counselor_row(row)


async def slots(
    conn: AsyncConnection, counselor_id: uuid.UUID, *, since: datetime | None, free: bool | None
) -> list[JSON]:
    s, a = t.slots.c, t.appointments.c
    live = (
        sa.select(a.appointment_id)
        .where(a.slot_id == s.slot_id, a.status != "cancelled")
        .correlate(t.slots)
        .exists()
    )
    query = (
        sa.select(s.slot_id, s.starts_at, s.ends_at, live.label("taken"))
        .where(s.counselor_id == counselor_id)
        .order_by(s.starts_at)
    )
    if since is not None:
        query = query.where(s.ends_at > since)
    if free is not None:
        query = query.where(~live if free else live)
    return [
        {
            "slot_id": str(r.slot_id),
            "starts_at": _iso(r.starts_at),
            "ends_at": _iso(r.ends_at),
            "free": not r.taken,
        }
        for r in (await conn.execute(query)).all()
    ]


# --- appointments -----------------------------------------------------------------------------------


def _appointment_row(row: sa.RowMapping) -> JSON:
    return {
        "appointment_id": str(row["appointment_id"]),
        "slot_id": str(row["slot_id"]),
        "counselor_id": str(row["counselor_id"]),
        "client_ref": row["client_ref"],
        "client_kind": row["client_kind"],
        "status": row["status"],
        "starts_at": _iso(row["starts_at"]),
        "ends_at": _iso(row["ends_at"]),
        "booked_on": row["booked_on"].isoformat(),
        "closed_on": row["closed_on"].isoformat() if row["closed_on"] else None,
        "cancelled_by": row["cancelled_by"],
    }


async def appointment(conn: AsyncConnection, appointment_id: uuid.UUID) -> JSON:
    row = (
        (
            await conn.execute(
                sa.select(t.appointments).where(t.appointments.c.appointment_id == appointment_id)
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        raise NotFound(f"appointment {appointment_id} not found")
    return _appointment_row(row)


async def appointments(
    conn: AsyncConnection,
    *,
    counselor_id: uuid.UUID | None,
    counselor_subject: str | None,
    client_ref: str | None,
    status: str | None,
    on: date | None,
    limit: int,
    offset: int,
) -> list[JSON]:
    a = t.appointments.c
    query = sa.select(t.appointments).order_by(a.starts_at, a.appointment_id).limit(limit).offset(offset)
    if counselor_subject is not None:
        query = query.join(t.counselors, t.counselors.c.counselor_id == a.counselor_id).where(
            t.counselors.c.subject == counselor_subject
        )
    for column, value in (("counselor_id", counselor_id), ("client_ref", client_ref), ("status", status)):
        if value is not None:
            query = query.where(a[column] == value)
    if on is not None:
        query = query.where(*_on_day(a.starts_at, on))
    return [_appointment_row(r) for r in (await conn.execute(query)).mappings()]


def _on_day(column: Any, day: date) -> list[Any]:
    """``column`` falls on Beijing day ``day`` (no lower bound on 0001-01-01: see
    ``beijing_day_bounds``)."""
    start, end = beijing_day_bounds(day)
    return [column < end] if start is None else [column >= start, column < end]


async def reminders(conn: AsyncConnection, clients: ClientVault, on: date) -> JSON:
    """Booked sessions on ``on`` (the caller passes tomorrow): who to remind, and of what."""
    a, c, cl = t.appointments.c, t.counselors.c, t.clients.c
    query = (
        sa.select(
            a.appointment_id,
            a.starts_at,
            a.ends_at,
            a.client_ref,
            a.client_kind,
            c.display_name,
            cl.member_id,
            cl.full_name_enc,
            cl.phone_enc,
        )
        .join(t.counselors, c.counselor_id == a.counselor_id)
        .join(t.clients, cl.client_ref == a.client_ref, isouter=True)
        .where(a.status == "booked", *_on_day(a.starts_at, on))
        .order_by(a.starts_at)
    )
    items = []
    for row in (await conn.execute(query)).mappings():
        contact = clients.contact(row) if row["full_name_enc"] else None
        items.append(
            {
                "appointment_id": str(row["appointment_id"]),
                "starts_at": _iso(row["starts_at"]),
                "ends_at": _iso(row["ends_at"]),
                "counselor": row["display_name"],
                "client_ref": row["client_ref"],
                "client_kind": row["client_kind"],
                "member_id": str(row["member_id"]) if row["member_id"] else None,
                "resident": {"full_name": contact.full_name, "phone": contact.phone} if contact else None,
            }
        )
    return {"on": on.isoformat(), "items": items}


async def no_shows(
    conn: AsyncConnection, *, client_ref: str | None, min_count: int, limit: int
) -> list[JSON]:
    a = t.appointments.c
    no_show = sa.func.count().filter(a.status == "no_show")
    query = (
        sa.select(
            a.client_ref,
            sa.func.min(a.client_kind).label("kind"),
            no_show.label("no_shows"),
            sa.func.count().label("total"),
        )
        .group_by(a.client_ref)
        .having(no_show >= min_count)
        .order_by(no_show.desc(), a.client_ref)
        .limit(limit)
    )
    if client_ref is not None:
        query = query.where(a.client_ref == client_ref)
    return [
        {"client_ref": r.client_ref, "client_kind": r.kind, "no_shows": r.no_shows, "appointments": r.total}
        for r in (await conn.execute(query)).all()
    ]


async def statistics(conn: AsyncConnection, *, since: date | None, until: date | None) -> JSON:
    """Counts only: sessions per month (Beijing months of the session's start), the no-show rate,
    and how many distinct clients were residents or members. No reference, no name."""
    a = t.appointments.c
    month = sa.func.to_char(sa.func.timezone("Asia/Shanghai", a.starts_at), "YYYY-MM")
    bounds = []
    if since is not None and (start := beijing_day_bounds(since)[0]) is not None:
        bounds.append(a.starts_at >= start)
    if until is not None:
        bounds.append(a.starts_at < beijing_day_bounds(until)[1])

    def counted(status: str) -> Any:
        return sa.func.count().filter(a.status == status)

    per_month = (
        sa.select(
            month.label("month"),
            counted("completed").label("sessions"),
            counted("no_show").label("no_shows"),
            counted("cancelled").label("cancelled"),
            counted("booked").label("booked"),
        )
        .where(*bounds)
        .group_by(month)
        .order_by(month)
    )
    months = [dict(r) for r in (await conn.execute(per_month)).mappings()]
    sessions = sum(m["sessions"] for m in months)
    missed = sum(m["no_shows"] for m in months)
    kinds = (
        await conn.execute(
            sa.select(a.client_kind, sa.func.count(sa.distinct(a.client_ref)))
            .where(a.status != "cancelled", *bounds)
            .group_by(a.client_kind)
        )
    ).all()
    by_kind = {kind: n for kind, n in kinds}
    members, residents = by_kind.get("member", 0), by_kind.get("resident", 0)
    return {
        "months": months,
        "sessions": sessions,
        "no_shows": missed,
        "no_show_rate": round(missed / (sessions + missed), 4) if sessions + missed else None,
        "clients": {
            "members": members,
            "residents": residents,
            "resident_share": round(residents / (members + residents), 4) if members + residents else None,
        },
    }


# --- confidential: the notes, and who asked for them ----------------------------------------------


async def session_notes(
    engine: AsyncEngine, trail: AuditTrail, vault: NotesVault, principal: Principal, appointment_id: uuid.UUID
) -> JSON:
    """The notes for the assigned counsellor and a supervisor; 403 for anybody else. Every
    attempt is committed to the audit trail *before* anything is decided or revealed."""
    async with engine.connect() as conn:
        assigned = (
            await conn.execute(
                sa.select(t.counselors.c.subject)
                .join(t.appointments, t.appointments.c.counselor_id == t.counselors.c.counselor_id)
                .where(t.appointments.c.appointment_id == appointment_id)
            )
        ).scalar_one_or_none()
    refusal = domain.notes_refusal(
        role=str(principal.role), subject=principal.subject, assigned_subject=assigned
    )
    if refusal is None and assigned is None:
        refusal = "no such appointment"
    await trail.record(
        principal,
        resource_type=NOTES_RESOURCE,
        resource_id=str(appointment_id),
        action=READ_NOTES,
        allowed=refusal is None,
        reason=refusal,
    )
    if refusal == "no such appointment":
        raise NotFound(f"appointment {appointment_id} not found")
    if refusal is not None:
        raise ProblemError(
            403,
            "Forbidden",
            "only the assigned counsellor and a supervisor may read session notes",
            code="notes_forbidden",
        )
    async with engine.connect() as conn:
        notes = await vault.read(conn, appointment_id)
    if notes is None:
        raise NotFound("this appointment has no session notes (it is not completed)", code="no_notes")
    return {"appointment_id": str(appointment_id), "notes": notes}


async def audit(conn: AsyncConnection, *, appointment_id: uuid.UUID | None, limit: int, offset: int) -> JSON:
    entries = await AuditTrail.entries(
        conn,
        resource_type=NOTES_RESOURCE,
        resource_id=str(appointment_id) if appointment_id else None,
        limit=limit,
        offset=offset,
    )
    return {
        "items": [
            {
                "appointment_id": e.resource_id,
                "subject": e.subject,
                "role": e.role,
                "action": e.action,
                "allowed": e.allowed,
                "reason": e.reason,
                "at": _iso(e.at),
            }
            for e in entries
        ]
    }
