"""Every read of the activities service, and the shaping of its JSON answers."""

from __future__ import annotations

import uuid
from datetime import date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.activities import tables as t
from services.activities.domain import Activity, MemberStanding, Outcome
from shared.clock import BEIJING, beijing_day_bounds
from shared.contracts.activities import ActivityKind

JSON = dict[str, Any]

# --- lookups the rules need -------------------------------------------------------------------


async def member_standing(conn: AsyncConnection, member_id: uuid.UUID) -> MemberStanding:
    row = (
        await conn.execute(
            sa.select(t.known_members.c.union_id, t.known_members.c.left_on).where(
                t.known_members.c.member_id == member_id
            )
        )
    ).first()
    if row is None:
        return MemberStanding(member_id, known=False)
    return MemberStanding(member_id, known=True, active=row.left_on is None, union_id=row.union_id)


async def has_open_interest(conn: AsyncConnection, member_id: uuid.UUID, kind: ActivityKind) -> bool:
    found = await conn.scalar(
        sa.select(t.interests.c.interest_id).where(
            t.interests.c.member_id == member_id,
            t.interests.c.kind == kind.value,
            t.interests.c.notified_activity_id.is_(None),
        )
    )
    return found is not None


async def open_interests(conn: AsyncConnection, kind: ActivityKind) -> list[tuple[uuid.UUID, uuid.UUID]]:
    """(interest_id, member_id) of the open interests in ``kind`` of members still active, in the
    order they were registered."""
    i, m = t.interests, t.known_members
    rows = await conn.execute(
        sa.select(i.c.interest_id, i.c.member_id)
        .join(m, m.c.member_id == i.c.member_id)
        .where(i.c.kind == kind.value, i.c.notified_activity_id.is_(None), m.c.left_on.is_(None))
        .order_by(i.c.registered_at, i.c.interest_id)
    )
    return [(r.interest_id, r.member_id) for r in rows]


async def activities_with_future_registrations(
    conn: AsyncConnection, member_id: uuid.UUID, from_day: date
) -> list[uuid.UUID]:
    """Activities starting on or after ``from_day`` (Beijing) where the member holds a live place."""
    r, a = t.registrations, t.activities
    start = datetime.combine(from_day, time(0), BEIJING)
    rows = await conn.execute(
        sa.select(r.c.activity_id)
        .distinct()
        .join(a, a.c.activity_id == r.c.activity_id)
        .where(
            r.c.member_id == member_id,
            r.c.status.in_(("confirmed", "waitlisted")),
            r.c.checked_in_at.is_(None),
            a.c.status == "scheduled",
            a.c.starts_at >= start,
        )
    )
    return sorted(rows.scalars())


# --- answers to commands ----------------------------------------------------------------------


def registration_answer(activity: Activity, outcome: Outcome) -> JSON:
    return {
        "registration_id": str(outcome.registration_id),
        "status": outcome.status.value,
        "waitlist_position": outcome.waitlist_position,
        "activity_id": activity.id,
        "session_id": str(outcome.session_id) if outcome.session_id else None,
    }


def cancel_answer(promoted: uuid.UUID | None) -> JSON:
    return {"status": "cancelled", "promoted_registration_id": str(promoted) if promoted else None}


def created_answer(activity: Activity, notified: list[uuid.UUID]) -> JSON:
    return {"activity_id": activity.id, "notified_interest_ids": [str(i) for i in notified]}


def registration_state(activity: Activity, registration_id: uuid.UUID) -> JSON:
    reg = activity.registration(registration_id)
    return {
        "registration_id": str(registration_id),
        "status": reg.status.value,
        "checked_in": reg.checked_in,
        "waitlist_position": activity.waitlist_position(registration_id),
    }


# --- activities -------------------------------------------------------------------------------


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


async def _counts(
    conn: AsyncConnection, activity_ids: list[uuid.UUID]
) -> dict[tuple[uuid.UUID, uuid.UUID | None], dict[str, int]]:
    r = t.registrations
    rows = await conn.execute(
        sa.select(r.c.activity_id, r.c.session_id, r.c.status, sa.func.count())
        .where(r.c.activity_id.in_(activity_ids), r.c.status != "cancelled")
        .group_by(r.c.activity_id, r.c.session_id, r.c.status)
    )
    out: dict[tuple[uuid.UUID, uuid.UUID | None], dict[str, int]] = {}
    for activity_id, session_id, status, n in rows:
        out.setdefault((activity_id, session_id), {})[status] = n
    return out


async def _shape(conn: AsyncConnection, rows: list[Any]) -> list[JSON]:
    if not rows:
        return []
    ids = [row["activity_id"] for row in rows]
    counts = await _counts(conn, ids)
    helpers: dict[uuid.UUID, list[JSON]] = {}
    for v in await conn.execute(
        sa.select(t.volunteers)
        .where(t.volunteers.c.activity_id.in_(ids))
        .order_by(t.volunteers.c.assigned_on)
    ):
        helpers.setdefault(v.activity_id, []).append({"member_id": str(v.member_id), "role": v.role})
    shaped = []
    for row in rows:
        aid = row["activity_id"]
        per = {k[1]: v for k, v in counts.items() if k[0] == aid}
        sessions = [
            {
                **s,
                "confirmed_count": per.get(uuid.UUID(s["session_id"]), {}).get("confirmed", 0),
                "waitlist_count": per.get(uuid.UUID(s["session_id"]), {}).get("waitlisted", 0),
            }
            for s in row["sessions"]
        ]
        shaped.append(
            {
                "activity_id": str(aid),
                "kind": row["kind"],
                "title": row["title"],
                "starts_at": _iso(row["starts_at"]),
                "ends_at": _iso(row["ends_at"]),
                "venue": row["venue"],
                "capacity": row["capacity"],
                "confirmed_count": sum(c.get("confirmed", 0) for c in per.values()),
                "waitlist_count": sum(c.get("waitlisted", 0) for c in per.values()),
                "status": row["status"],
                "audience": row["audience"],
                "child_age_min": row["child_age_min"],
                "child_age_max": row["child_age_max"],
                "registration_opens_at": _iso(row["registration_opens_at"]),
                "registration_closes_at": _iso(row["registration_closes_at"]),
                "registration_window_closed": row["registration_window_closed"],
                "union_id": str(row["union_id"]) if row["union_id"] else None,
                "partner": row["partner"],
                "sessions": sessions,
                "volunteers": helpers.get(aid, []),
            }
        )
    return shaped


async def activity(conn: AsyncConnection, activity_id: uuid.UUID) -> JSON | None:
    rows = list(
        (
            await conn.execute(sa.select(t.activities).where(t.activities.c.activity_id == activity_id))
        ).mappings()
    )
    shaped = await _shape(conn, rows)
    return shaped[0] if shaped else None


async def activities(
    conn: AsyncConnection,
    *,
    kind: ActivityKind | None = None,
    union_id: uuid.UUID | None = None,
    starts_from: date | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[JSON]:
    a = t.activities
    query = sa.select(a).order_by(a.c.starts_at, a.c.activity_id).limit(limit).offset(offset)
    if kind is not None:
        query = query.where(a.c.kind == kind.value)
    if union_id is not None:
        query = query.where(a.c.union_id == union_id)
    # No bound from 0001-01-01: its Beijing midnight is before year 1 in UTC (beijing_day_bounds).
    if starts_from is not None and (start := beijing_day_bounds(starts_from)[0]) is not None:
        query = query.where(a.c.starts_at >= start)
    return await _shape(conn, list((await conn.execute(query)).mappings()))


# --- registrations ----------------------------------------------------------------------------


def _position() -> sa.ColumnElement[int]:
    r = t.registrations
    return (
        sa.func.row_number()
        .over(partition_by=(r.c.activity_id, r.c.session_id), order_by=r.c.waitlist_seq)
        .label("waitlist_position")
    )


async def registrations(
    conn: AsyncConnection, activity_id: uuid.UUID, *, status: str | None = None
) -> list[JSON]:
    """Confirmed first (in the order they registered), then the waitlist in its order, then the
    cancelled; a waitlisted registration's position is 1 for the next in line."""
    r = t.registrations
    waiting = (
        sa.select(r.c.registration_id, _position())
        .where(r.c.activity_id == activity_id, r.c.status == "waitlisted")
        .subquery()
    )
    query = (
        sa.select(r, waiting.c.waitlist_position)
        .outerjoin(waiting, waiting.c.registration_id == r.c.registration_id)
        .where(r.c.activity_id == activity_id)
        .order_by(
            sa.case({"confirmed": 0, "waitlisted": 1}, value=r.c.status, else_=2),
            waiting.c.waitlist_position,
            r.c.registered_at,
            r.c.registration_id,
        )
    )
    if status is not None:
        query = query.where(r.c.status == status)
    rows = await conn.execute(query)
    return [
        {
            "registration_id": str(row["registration_id"]),
            "member_id": str(row["member_id"]) if row["member_id"] else None,
            "status": row["status"],
            "waitlist_position": row["waitlist_position"],
            "resident_ref": row["resident_ref"],
            "session_id": str(row["session_id"]) if row["session_id"] else None,
            "children_ages": row["children_ages"],
            "registered_at": _iso(row["registered_at"]),
            "checked_in_at": _iso(row["checked_in_at"]),
        }
        for row in rows.mappings()
    ]


async def member_registrations(conn: AsyncConnection, member_id: uuid.UUID) -> list[JSON]:
    r, a = t.registrations, t.activities
    rows = await conn.execute(
        sa.select(
            r.c.registration_id, r.c.activity_id, a.c.title, a.c.starts_at, r.c.status, r.c.checked_in_at
        )
        .join(a, a.c.activity_id == r.c.activity_id)
        .where(r.c.member_id == member_id)
        .order_by(a.c.starts_at, r.c.registration_id)
    )
    return [
        {
            "registration_id": str(row.registration_id),
            "activity_id": str(row.activity_id),
            "title": row.title,
            "starts_at": _iso(row.starts_at),
            "status": row.status,
            "checked_in_at": _iso(row.checked_in_at),
        }
        for row in rows
    ]


# --- feedback and statistics ------------------------------------------------------------------


async def feedback_summary(conn: AsyncConnection, activity_id: uuid.UUID) -> JSON:
    f = t.feedback
    rows = (
        await conn.execute(
            sa.select(f.c.rating, f.c.comment)
            .where(f.c.activity_id == activity_id)
            .order_by(f.c.submitted_at)
        )
    ).all()
    ratings = {str(n): 0 for n in range(1, 6)}
    for row in rows:
        ratings[str(row.rating)] += 1
    count = len(rows)
    return {
        "count": count,
        "average_rating": round(sum(r.rating for r in rows) / count, 2) if count else None,
        "ratings": ratings,
        "comments": [r.comment for r in rows if r.comment],
    }


STATISTICS_BY = ("activity", "union", "year")


async def participation(
    conn: AsyncConnection, *, by: str, year: int | None = None, union_id: uuid.UUID | None = None
) -> list[JSON]:
    """Registrations, attendance and waitlist demand per activity, per union (the registrant's
    union when they registered; ``residents`` for non-members) or per year (Beijing year of the
    activity). ``turned_away``: registrations that waited and never got a place."""
    r, a = t.registrations, t.activities
    activity_year = sa.extract("year", sa.func.timezone("Asia/Shanghai", a.c.starts_at)).cast(sa.Integer)
    key: sa.ColumnElement[Any]
    if by == "activity":
        key = sa.cast(a.c.activity_id, sa.Text)
    elif by == "union":
        key = sa.func.coalesce(sa.cast(r.c.member_union_id, sa.Text), "residents")
    else:
        key = sa.cast(activity_year, sa.Text)
    counted = sa.func.count().filter
    query = (
        sa.select(
            key.label("key"),
            sa.func.count(sa.distinct(a.c.activity_id)).label("activities"),
            sa.func.count(r.c.registration_id).label("registrations"),
            counted(r.c.ever_confirmed).label("confirmed"),
            counted(r.c.checked_in_at.is_not(None)).label("attended"),
            counted(r.c.status == "waitlisted").label("waitlisted_now"),
            counted(sa.and_(r.c.ever_waitlisted, sa.not_(r.c.ever_confirmed))).label("turned_away"),
            counted(r.c.status == "cancelled").label("cancelled"),
        )
        .select_from(a.join(r, r.c.activity_id == a.c.activity_id))
        .group_by(key)
        .order_by(key)
    )
    if year is not None:
        query = query.where(activity_year == year)
    if union_id is not None:
        query = query.where(sa.or_(a.c.union_id == union_id, r.c.member_union_id == union_id))
    rows = await conn.execute(query)
    return [dict(row) for row in rows.mappings()]
