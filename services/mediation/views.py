"""Every read: the SQL against the read models, and the shaping of every JSON answer.

Visibility: staff bound to a union see the cases that union has handled (received at the station,
or escalated to it); federation-wide staff, supervisors and integrators see every case. Only staff
and supervisors see the parties (the worker's name and phone, the employer, the claim in words)
and the texts of outcomes; integrators see ids, dates, amounts and statuses. Minutes are read
through their own route, after the audit trail recorded the attempt.
"""

from __future__ import annotations

import statistics
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.mediation import calendar, domain, periods
from services.mediation.domain import ACTIVE, Case, UnionNode
from services.mediation.tables import case_history, case_prefixes, cases, members, sessions, stations, unions
from services.mediation.vault import Vault
from shared.contracts.mediation import Tier

JSON = dict[str, Any]


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, uuid.UUID | Decimal):
        return str(value)
    return value


def _money(value: Decimal | None) -> str | None:
    return None if value is None else f"{value:.2f}"


# --- the union tree and members -------------------------------------------------------------------


async def union(conn: AsyncConnection, union_id: uuid.UUID) -> tuple[UnionNode, str] | None:
    row = (await conn.execute(sa.select(unions).where(unions.c.union_id == union_id))).mappings().first()
    if row is None:
        return None
    return UnionNode(row["union_id"], row["level"], row["parent_id"]), row["name"]


async def ancestors(conn: AsyncConnection, union_id: uuid.UUID) -> list[UnionNode]:
    """The union's parent, its parent's parent... as far as this service knows the tree."""
    found: list[UnionNode] = []
    seen = {union_id}
    current = await union(conn, union_id)
    while current is not None and current[0].parent_id is not None and current[0].parent_id not in seen:
        seen.add(current[0].parent_id)
        current = await union(conn, current[0].parent_id)
        if current is not None:
            found.append(current[0])
    return found


async def member_known(conn: AsyncConnection, member_id: uuid.UUID) -> bool:
    return bool(await conn.scalar(sa.select(sa.func.count()).where(members.c.member_id == member_id)))


async def station_prefix(conn: AsyncConnection, union_id: uuid.UUID) -> str | None:
    prefix: str | None = await conn.scalar(
        sa.select(stations.c.case_prefix).where(stations.c.union_id == union_id)
    )
    return prefix


async def prefixes_of_others(conn: AsyncConnection, union_id: uuid.UUID) -> set[str]:
    """Every prefix another station has used or set: none of them is this station's default."""
    rows = await conn.execute(sa.select(case_prefixes.c.prefix).where(case_prefixes.c.union_id != union_id))
    return {r[0] for r in rows}


async def station_answer(conn: AsyncConnection, union_id: uuid.UUID) -> JSON:
    found = await union(conn, union_id)
    assert found is not None
    prefix = await station_prefix(conn, union_id)
    if prefix is None:  # the default its first case will take, as things stand now
        prefix = domain.station_prefix(found[1], await prefixes_of_others(conn, union_id))
    return {
        "union_id": str(union_id),
        "name": found[1],
        "case_prefix": prefix,
        "room_id": str(domain.room_id(union_id)),
    }


# --- the sweep ------------------------------------------------------------------------------------


async def sweep_candidates(
    conn: AsyncConnection, on: date, *, handling_union_id: uuid.UUID | None = None
) -> list[uuid.UUID]:
    """Active cases past their deadline or near their limit on ``on`` (of one handling union, if
    given). ``on`` is never after today, so the warning horizon stays inside the calendar."""
    warn = on + timedelta(days=periods.LIMIT_WARNING_DAYS)
    query = (
        sa.select(cases.c.case_id)
        .where(
            cases.c.status.in_([s.value for s in ACTIVE]),
            sa.or_(cases.c.mediation_deadline < on, cases.c.arbitration_limit <= warn),
        )
        .order_by(cases.c.case_number)
    )
    if handling_union_id is not None:
        query = query.where(cases.c.handling_union_id == handling_union_id)
    return [r[0] for r in await conn.execute(query)]


def sweep_answer(result: Any) -> JSON:
    return {
        "on": result.on.isoformat(),
        "overdue": [str(c) for c in result.overdue],
        "limit_near": [str(c) for c in result.limit_near],
        "events_emitted": result.emitted,
    }


# --- answers of commands --------------------------------------------------------------------------


def case_created(case: Case) -> JSON:
    assert case.received_on and case.learned_on and case.mediation_deadline and case.arbitration_limit
    return {
        "case_id": case.id,
        "case_number": case.case_number,
        "mediation_deadline": case.mediation_deadline.isoformat(),
        "arbitration_limit": case.arbitration_limit.isoformat(),
        "deadlines": deadline_notes(
            case.received_on, case.learned_on, case.mediation_deadline, case.arbitration_limit
        ),
    }


def case_state(case: Case) -> JSON:
    return {
        "case_id": case.id,
        "status": str(case.status),
        "tier": str(case.tier),
        "handling_union_id": str(case.handling_union_id),
        "version": case.version,
    }


def session_cancelled(cancelled: Any) -> JSON:
    return {
        "session_id": str(cancelled.session_id),
        "room_id": str(cancelled.room_id),
        "case_id": str(cancelled.case.case_id),
        "status": "cancelled",
        "version": cancelled.case.version,
    }


def session_created(booked: Any) -> JSON:
    return {"session_id": str(booked.session_id), "room_id": str(booked.room_id), "case_id": booked.case.id}


def deadline_notes(
    received_on: date, learned_on: date, mediation_deadline: date, arbitration_limit: date
) -> list[JSON]:
    """Each deadline with its legal source and how it was counted."""
    return [
        {
            "period": periods.MEDIATION.code,
            "from": received_on.isoformat(),
            "length": f"{periods.MEDIATION.length} {periods.MEDIATION.unit}",
            "last_day": mediation_deadline.isoformat(),
            "source": periods.MEDIATION.source,
            "meaning": periods.MEDIATION.meaning,
            "calendar_covers": calendar.covers(mediation_deadline),
        },
        {
            "period": periods.ARBITRATION.code,
            "from": learned_on.isoformat(),
            "length": f"{periods.ARBITRATION.length} {periods.ARBITRATION.unit}",
            "last_day": arbitration_limit.isoformat(),
            "source": periods.ARBITRATION.source,
            "meaning": periods.ARBITRATION.meaning,
            "calendar_covers": calendar.covers(arbitration_limit),
        },
    ]


# --- cases ----------------------------------------------------------------------------------------


def may_see(viewer_union: uuid.UUID | None, handled_by: list[uuid.UUID]) -> bool:
    return viewer_union is None or viewer_union in handled_by


def _summary(row: Any, today: date) -> JSON:
    days_to_limit = (row["arbitration_limit"] - today).days
    active = row["status"] in {s.value for s in ACTIVE}
    return {
        "case_id": str(row["case_id"]),
        "case_number": row["case_number"],
        "status": row["status"],
        "tier": row["tier"],
        "handling_union_id": str(row["handling_union_id"]),
        "station_union_id": str(row["station_union_id"]),
        "category": row["category"],
        "received_on": row["received_on"].isoformat(),
        "mediation_deadline": row["mediation_deadline"].isoformat(),
        "arbitration_limit": row["arbitration_limit"].isoformat(),
        "overdue": active and today > row["mediation_deadline"],
        "arbitration_limit_near": active and 0 <= days_to_limit <= periods.LIMIT_WARNING_DAYS,
        "employer_refused": row["employer_refused_on"] is not None,
    }


async def case_row(conn: AsyncConnection, case_id: uuid.UUID) -> Any:
    return (await conn.execute(sa.select(cases).where(cases.c.case_id == case_id))).mappings().first()


async def case_detail(
    conn: AsyncConnection, row: Any, today: date, *, vault: Vault, with_parties: bool
) -> JSON:
    case_id: uuid.UUID = row["case_id"]
    out = _summary(row, today)
    out |= {
        "party": row["party"],
        "member_id": _iso(row["member_id"]),
        "learned_on": row["learned_on"].isoformat(),
        "amount_claimed": _money(row["amount_claimed"]),
        "handled_by": [str(u) for u in row["handled_by"]],
        "deadlines": deadline_notes(
            row["received_on"], row["learned_on"], row["mediation_deadline"], row["arbitration_limit"]
        ),
        "may_apply_for_arbitration": row["status"] in {s.value for s in ACTIVE}
        and (row["employer_refused_on"] is not None or today > row["mediation_deadline"]),
        "outcome": {
            "agreed_on": _iso(row["agreed_on"]),
            "agreed_amount": _money(row["agreed_amount"]),
            "due_on": _iso(row["agreement_due_on"]),
            "agreed_at_tier": row["agreed_tier"],
            "fulfilled_on": _iso(row["fulfilled_on"]),
            "amount_paid": _money(row["amount_paid"]),
            "referred_to": row["referred_to"],
            "employer_refused_on": _iso(row["employer_refused_on"]),
            "closed_on": _iso(row["closed_on"]),
        },
        "version": row["version"],
    }
    texts = await vault.texts(conn, case_id) if with_parties else {}
    history = await conn.execute(
        sa.select(case_history).where(case_history.c.case_id == case_id).order_by(case_history.c.version)
    )
    out["history"] = [
        {
            "version": h["version"],
            "event_type": h["event_type"],
            "at": _iso(h["occurred_at"]),
            "data": h["data"],
            **({"texts": texts[h["version"]]} if h["version"] in texts else {}),
        }
        for h in history.mappings()
    ]
    session_rows = await conn.execute(
        sa.select(sessions).where(sessions.c.case_id == case_id).order_by(sessions.c.starts_at)
    )
    out["sessions"] = [
        {
            "session_id": str(s["session_id"]),
            "room_id": str(s["room_id"]),
            "starts_at": _iso(s["starts_at"]),
            "ends_at": _iso(s["ends_at"]),
            "mediator": s["mediator"],
            "parties_present": s["parties_present"],
            "minutes_recorded": s["minutes_recorded"],
            "status": "cancelled" if s["cancelled_on"] is not None else "scheduled",
            "cancelled_on": _iso(s["cancelled_on"]),
        }
        for s in session_rows.mappings()
    ]
    if with_parties:
        parties = await vault.parties(conn, case_id)
        if parties is not None:
            out["worker"] = (
                {"full_name": parties.worker_name, "phone": parties.worker_phone}
                if parties.worker_name is not None
                else None
            )
            out["employer"] = {"name": parties.employer_name, "credit_code": parties.employer_credit_code}
            out["claim_text"] = parties.claim_text
    return out


async def queue(conn: AsyncConnection, union_id: uuid.UUID, today: date) -> list[JSON]:
    """The cases ``union_id`` handles now, most urgent deadline first."""
    rows = await conn.execute(
        sa.select(cases)
        .where(cases.c.handling_union_id == union_id, cases.c.status.in_([s.value for s in ACTIVE]))
        .order_by(cases.c.mediation_deadline, cases.c.case_number)
    )
    return [_summary(r, today) for r in rows.mappings()]


async def list_cases(
    conn: AsyncConnection,
    today: date,
    *,
    viewer_union: uuid.UUID | None,
    station_id: uuid.UUID | None,
    member_id: uuid.UUID | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[JSON]:
    query = (
        sa.select(cases).order_by(cases.c.received_on.desc(), cases.c.case_number).limit(limit).offset(offset)
    )
    if viewer_union is not None:
        query = query.where(cases.c.handled_by.contains([viewer_union]))
    if station_id is not None:
        query = query.where(cases.c.station_union_id == station_id)
    if member_id is not None:
        query = query.where(cases.c.member_id == member_id)
    if status is not None:
        query = query.where(cases.c.status == status)
    return [_summary(r, today) for r in (await conn.execute(query)).mappings()]


async def session_row(conn: AsyncConnection, case_id: uuid.UUID, session_id: uuid.UUID) -> Any:
    return (
        (
            await conn.execute(
                sa.select(sessions).where(sessions.c.session_id == session_id, sessions.c.case_id == case_id)
            )
        )
        .mappings()
        .first()
    )


# --- statistics -----------------------------------------------------------------------------------


def _figures(rows: list[Any]) -> JSON:
    agreed = [r for r in rows if r["agreed_on"] is not None]
    closed = [r for r in rows if r["status"] not in {s.value for s in ACTIVE}]
    days = [(r["agreed_on"] - r["received_on"]).days for r in agreed]
    return {
        "cases": len(rows),
        "by_category": dict(sorted(Counter(r["category"] for r in rows).items())),
        "by_status": dict(sorted(Counter(r["status"] for r in rows).items())),
        "agreed": len(agreed),
        #: Agreements among the cases that reached an outcome (escalated ones have not yet).
        "resolution_rate": round(len(agreed) / len(closed), 4) if closed else None,
        "median_days_to_agreement": statistics.median(days) if days else None,
        "amount_claimed": _money(sum((r["amount_claimed"] or Decimal(0) for r in rows), Decimal(0))),
        "amount_agreed": _money(sum((r["agreed_amount"] or Decimal(0) for r in agreed), Decimal(0))),
        "amount_recovered": _money(sum((r["amount_paid"] or Decimal(0) for r in rows), Decimal(0))),
    }


async def statistics_answer(
    conn: AsyncConnection, *, year: int | None, viewer_union: uuid.UUID | None
) -> JSON:
    """Per station (the cases it received) and per tier (the cases each tier handled, and what it
    resolved: an agreement counts for the tier that reached it)."""
    query = sa.select(cases)
    if year is not None:
        query = query.where(sa.extract("year", cases.c.received_on) == year)
    if viewer_union is not None:
        query = query.where(cases.c.handled_by.contains([viewer_union]))
    rows = list((await conn.execute(query)).mappings())
    names = {
        r["union_id"]: r["name"]
        for r in (await conn.execute(sa.select(unions.c.union_id, unions.c.name))).mappings()
    }
    by_station: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for r in rows:
        by_station[r["station_union_id"]].append(r)
    tiers: list[JSON] = []
    order = list(Tier)
    for tier in order:
        reached = [r for r in rows if order.index(Tier(r["tier"])) >= order.index(tier)]
        resolved_here = [r for r in reached if r["agreed_tier"] == tier]
        figures = _figures(reached)
        figures["agreed"] = len(resolved_here)
        figures["amount_agreed"] = _money(sum((r["agreed_amount"] for r in resolved_here), Decimal(0)))
        days = [(r["agreed_on"] - r["received_on"]).days for r in resolved_here]
        figures["median_days_to_agreement"] = statistics.median(days) if days else None
        closed_here = [
            r for r in reached if r["tier"] == tier and r["status"] not in {s.value for s in ACTIVE}
        ]
        figures["resolution_rate"] = round(len(resolved_here) / len(closed_here), 4) if closed_here else None
        tiers.append({"tier": tier.value, **figures})
    return {
        "year": year,
        "stations": [
            {"union_id": str(station), "name": names.get(station), **_figures(station_rows)}
            for station, station_rows in sorted(by_station.items(), key=lambda kv: str(kv[0]))
        ],
        "tiers": tiers,
        "all": _figures(rows),
    }


def periods_answer() -> JSON:
    return {
        "periods": [
            {
                "period": p.code,
                "length": p.length,
                "unit": str(p.unit),
                "source": p.source,
                "meaning": p.meaning,
            }
            for p in periods.PERIODS
        ],
        "counting": "Civil Code arts. 201-203: the day of receipt is not counted; a period whose last day is "
        "a statutory holiday or rest day ends on the next working day",
        "limit_warning_days": periods.LIMIT_WARNING_DAYS,
        "calendar": [
            {
                "year": n.year,
                "source": n.source,
                "days_off": sorted(d.isoformat() for d in n.days_off),
                "working_weekend_days": sorted(d.isoformat() for d in n.working_weekend_days),
            }
            for n in calendar.NOTICES.values()
        ],
    }
