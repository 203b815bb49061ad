"""Read side: every query over the read models, and the shaping of every answer (a command's
too: ``*_answer`` turn what a handler returns into the JSON the route answers). Nothing here
changes state.

Personal data leaves only masked (national ID, phone) or as the card's last 4 digits.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.membership.domain import (
    HEALTH_READER_ROLES,
    Enrollment,
    FirstReport,
    InjuryReport,
    Member,
    Union,
    health_details_refusal,
    parse_national_id,
)
from services.membership.tables import (
    activity_events,
    cards,
    claim_events,
    enrollments,
    injury_reports,
    mediation_cases,
    mediation_events,
    member_claims,
    member_timeline,
    members,
    paper_receipts,
    plans,
    unions,
)
from services.membership.vault import Vault
from shared import driver
from shared.aggregate import NotFound
from shared.audit import AuditTrail
from shared.auth import Principal
from shared.contracts.common import Benefit
from shared.contracts.plans import Plan
from shared.crypto import mask
from shared.http import ProblemError

if TYPE_CHECKING:
    from services.membership.handlers import ContactChange, PlanDefinition

JSON = dict[str, Any]


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
    return value.isoformat() if isinstance(value, date) else value


def _row(mapping: Any) -> JSON:
    """A row as JSON: ids and decimals as strings, dates as YYYY-MM-DD, times as RFC 3339."""
    out: JSON = {}
    for key, value in dict(mapping).items():
        out[str(key)] = str(value) if isinstance(value, uuid.UUID | Decimal) else _iso(value)
    return out


# --- unions -----------------------------------------------------------------------------------


def subtree(union_id: uuid.UUID) -> sa.CTE:
    """The union and every union below it."""
    tree = sa.select(unions.c.union_id).where(unions.c.union_id == union_id).cte("tree", recursive=True)
    return tree.union_all(sa.select(unions.c.union_id).where(unions.c.parent_id == tree.c.union_id))


async def list_unions(conn: AsyncConnection, *, level: str | None, parent_id: uuid.UUID | None) -> list[JSON]:
    query = sa.select(unions).order_by(unions.c.registered_at, unions.c.name)
    if level:
        query = query.where(unions.c.level == level)
    if parent_id:
        query = query.where(unions.c.parent_id == parent_id)
    return [_row(r) for r in (await conn.execute(query)).mappings()]


async def get_union(conn: AsyncConnection, union_id: uuid.UUID) -> JSON | None:
    row = (await conn.execute(sa.select(unions).where(unions.c.union_id == union_id))).mappings().first()
    if row is None:
        return None
    out = _row(row)
    children = await conn.execute(
        sa.select(unions.c.union_id, unions.c.name, unions.c.level)
        .where(unions.c.parent_id == union_id)
        .order_by(unions.c.name)
    )
    out["children"] = [_row(c) for c in children.mappings()]
    tree = subtree(union_id)
    out["active_members"] = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(members)
        .where(members.c.union_id.in_(sa.select(tree.c.union_id)), members.c.status == "active")
    )
    return out


# --- members ----------------------------------------------------------------------------------

_MEMBER_COLUMNS = (
    members.c.member_id,
    members.c.union_id,
    unions.c.name.label("union_name"),
    members.c.full_name,
    members.c.gender,
    members.c.birth_date,
    members.c.joined_on,
    members.c.employer,
    members.c.status,
    members.c.left_on,
    members.c.leave_reason,
    members.c.version,
)


def _members_query() -> sa.Select[Any]:
    return sa.select(*_MEMBER_COLUMNS).select_from(
        members.outerjoin(unions, unions.c.union_id == members.c.union_id)
    )


async def search_members(
    conn: AsyncConnection,
    vault: Vault,
    *,
    union_id: uuid.UUID | None,
    name: str | None,
    status: str | None,
    limit: int,
    offset: int,
) -> list[JSON]:
    """``union_id`` matches that union and every union under it; ``name`` is a substring."""
    query = _members_query().order_by(members.c.full_name, members.c.member_id).limit(limit).offset(offset)
    if union_id is not None:
        tree = subtree(union_id)
        query = query.where(members.c.union_id.in_(sa.select(tree.c.union_id)))
    if name:
        query = query.where(members.c.full_name.icontains(name, autoescape=True))
    if status:
        query = query.where(members.c.status == status)
    rows = [_row(r) for r in (await conn.execute(query)).mappings()]
    identities = await vault.masked_identities(conn, [uuid.UUID(r["member_id"]) for r in rows])
    for r in rows:
        ident = identities.get(r["member_id"])
        r["national_id"] = ident.national_id if ident else None
    return rows


async def member_with_national_id(conn: AsyncConnection, vault: Vault, national_id: str) -> JSON | None:
    """The member whose national ID this is (looked up by its blind index), or None."""
    member_id = await vault.member_with_national_id(conn, parse_national_id(national_id))
    return await member_detail(conn, vault, uuid.UUID(member_id)) if member_id else None


async def member_detail(
    conn: AsyncConnection, vault: Vault, member_id: uuid.UUID, *, with_receipts: bool = False
) -> JSON | None:
    """The member with cards and enrolments. A paper enrolment says ``recorded_late`` and
    ``paid_on``; its ``receipt_reference`` is answered only ``with_receipts`` (staff and
    supervisors, who check it against the receipt book), never to read-only integrators."""
    row = (await conn.execute(_members_query().where(members.c.member_id == member_id))).mappings().first()
    if row is None:
        return None
    out = _row(row)
    ident = (await vault.masked_identities(conn, [member_id])).get(str(member_id))
    out["national_id"] = ident.national_id if ident else None
    out["phone"] = ident.phone if ident else None

    card_rows = [
        _row(c)
        for c in (
            await conn.execute(
                sa.select(
                    cards.c.card_last4,
                    cards.c.issued_on,
                    cards.c.status,
                    cards.c.cancelled_on,
                    cards.c.cancel_reason,
                )
                .where(cards.c.member_id == member_id)
                .order_by(cards.c.seq)
            )
        ).mappings()
    ]
    active = [c for c in card_rows if c["status"] == "active"]
    out["card"] = {k: active[-1][k] for k in ("card_last4", "issued_on", "status")} if active else None
    out["cards"] = card_rows

    out["enrollments"] = [
        _enrollment_row(e, with_receipts=with_receipts)
        for e in (
            await conn.execute(
                sa.select(
                    enrollments.c.enrollment_id,
                    enrollments.c.plan_code,
                    plans.c.name.label("plan_name"),
                    enrollments.c.shares,
                    enrollments.c.price_level,
                    enrollments.c.starts_on,
                    enrollments.c.ends_on,
                    enrollments.c.status,
                    enrollments.c.cancelled_on,
                    paper_receipts.c.paid_on,
                    paper_receipts.c.receipt_reference,
                    paper_receipts.c.recorded_on.label("receipt_recorded_on"),
                )
                .select_from(
                    enrollments.outerjoin(plans, plans.c.code == enrollments.c.plan_code).outerjoin(
                        paper_receipts, paper_receipts.c.enrollment_id == enrollments.c.enrollment_id
                    )
                )
                .where(enrollments.c.member_id == member_id)
                .order_by(enrollments.c.starts_on, enrollments.c.plan_code)
            )
        ).mappings()
    ]
    out["claims"] = await member_claim_list(conn, member_id=member_id)
    return out


def _enrollment_row(mapping: Any, *, with_receipts: bool) -> JSON:
    out = _row(mapping)
    # As on the event: paid on an earlier day than it was recorded (a paper enrolment paid and
    # recorded the same day is not late).
    del out["receipt_recorded_on"]
    paid_on, recorded_on = mapping["paid_on"], mapping["receipt_recorded_on"]
    out["recorded_late"] = paid_on is not None and paid_on < recorded_on
    if not with_receipts:
        del out["receipt_reference"]
    return out


async def member_claim_list(
    conn: AsyncConnection, *, member_id: uuid.UUID | None = None, report_id: uuid.UUID | None = None
) -> list[JSON]:
    query = sa.select(member_claims).order_by(member_claims.c.updated_at)
    if member_id is not None:
        query = query.where(member_claims.c.member_id == member_id)
    if report_id is not None:
        query = query.where(member_claims.c.report_id == report_id)
    return [_row(c) for c in (await conn.execute(query)).mappings()]


async def member_exists(conn: AsyncConnection, member_id: uuid.UUID) -> bool:
    found = await conn.scalar(sa.select(members.c.member_id).where(members.c.member_id == member_id))
    return found is not None


async def timeline(conn: AsyncConnection, member_id: uuid.UUID) -> list[JSON]:
    """The member's own events and what the claims, activities and mediation services reported
    back (claims; registrations, places and attendance; mediation cases without amounts, mediator
    or text), oldest first."""
    own = sa.select(
        member_timeline.c.event_id,
        member_timeline.c.occurred_at,
        member_timeline.c.aggregate_version,
        member_timeline.c.event_type,
        sa.literal("membership").label("source"),
        member_timeline.c.data,
    ).where(member_timeline.c.member_id == member_id)
    claims = sa.select(
        claim_events.c.event_id,
        claim_events.c.occurred_at,
        claim_events.c.aggregate_version,
        claim_events.c.event_type,
        sa.literal("claims").label("source"),
        claim_events.c.data,
    ).where(claim_events.c.member_id == member_id)
    activities = sa.select(
        activity_events.c.event_id,
        activity_events.c.occurred_at,
        activity_events.c.aggregate_version,
        activity_events.c.event_type,
        sa.literal("activities").label("source"),
        activity_events.c.data,
    ).where(activity_events.c.member_id == member_id)
    mediation = sa.select(
        mediation_events.c.event_id,
        mediation_events.c.occurred_at,
        mediation_events.c.aggregate_version,
        mediation_events.c.event_type,
        sa.literal("mediation").label("source"),
        mediation_events.c.data,
    ).where(mediation_events.c.member_id == member_id)
    merged = sa.union_all(own, claims, activities, mediation).subquery()
    rows = await conn.execute(
        sa.select(merged).order_by(merged.c.occurred_at, merged.c.aggregate_version, merged.c.event_id)
    )
    return [_row(r) for r in rows.mappings()]


async def member_mediation_cases(conn: AsyncConnection, member_id: uuid.UUID) -> list[JSON]:
    """Where each of the member's mediation cases stands now, oldest first."""
    rows = await conn.execute(
        sa.select(mediation_cases)
        .where(mediation_cases.c.member_id == member_id)
        .order_by(mediation_cases.c.received_on, mediation_cases.c.case_number)
    )
    return [_row(r) for r in rows.mappings()]


# --- injury reports ---------------------------------------------------------------------------


async def member_injury_reports(conn: AsyncConnection, member_id: uuid.UUID) -> list[JSON]:
    rows = await conn.execute(
        sa.select(injury_reports)
        .where(injury_reports.c.member_id == member_id)
        .order_by(injury_reports.c.occurred_on, injury_reports.c.reported_at)
    )
    return [_row(r) for r in rows.mappings()]


#: The audit trail's names for a report's health details and for reading them.
INJURY_DETAILS_RESOURCE = "injury_details"
READ_INJURY_DETAILS = "read_injury_details"


async def first_report_of(
    conn: AsyncConnection, member_id: uuid.UUID, occurred_on: date
) -> FirstReport | None:
    """The first report of the member's injury on ``occurred_on``, if it was reported before."""
    return (await report_context(conn, member_id, occurred_on)).first_report


async def injury_report_detail(
    engine: AsyncEngine, trail: AuditTrail, vault: Vault, principal: Principal, report_id: uuid.UUID
) -> JSON:
    """The report with its health details, for the roles that may read them. Every attempt is
    committed to the audit trail (allowed or refused) *before* anything is decided or revealed."""
    async with engine.connect() as conn:
        row = (
            (await conn.execute(sa.select(injury_reports).where(injury_reports.c.report_id == report_id)))
            .mappings()
            .first()
        )
        in_callers_unions = row is None or await _member_under(conn, row["member_id"], principal.union_id)
    refusal = health_details_refusal(
        role=str(principal.role), report_exists=row is not None, in_callers_unions=in_callers_unions
    )
    await trail.record(
        principal,
        resource_type=INJURY_DETAILS_RESOURCE,
        resource_id=str(report_id),
        action=READ_INJURY_DETAILS,
        allowed=refusal is None,
        reason=refusal,
    )
    if str(principal.role) not in HEALTH_READER_ROLES:
        raise ProblemError(
            403, "Forbidden", "only staff and supervisors may read injury details", code="forbidden"
        )
    if row is None:
        raise NotFound(f"injury report {report_id} not found")
    if not in_callers_unions:
        raise ProblemError(
            403,
            "Forbidden",
            "this token is bound to a union the member does not belong to",
            code="other_union",
        )
    out = _row(row)
    async with engine.connect() as conn:
        details = await vault.injury_details(conn, report_id)
        out.update(
            description=details.description if details else None,
            diagnosis=details.diagnosis if details else None,
            hospital=details.hospital if details else None,
        )
        out["claims"] = await member_claim_list(conn, report_id=report_id)
        no_cover = await conn.scalar(
            sa.select(claim_events.c.data)
            .where(claim_events.c.report_id == report_id, claim_events.c.event_type == "NoCoverageFound")
            .order_by(claim_events.c.occurred_at.desc())
            .limit(1)
        )
    out["no_coverage_reasons"] = list(no_cover.get("reasons", [])) if no_cover else None
    return out


async def _member_under(conn: AsyncConnection, member_id: uuid.UUID, union_id: str | None) -> bool:
    """Whether the member is in ``union_id`` or a union below it (True for an unbound token)."""
    if union_id is None:
        return True
    try:
        bound = uuid.UUID(union_id)
    except ValueError:
        return False
    tree = subtree(bound)
    found = await conn.scalar(
        sa.select(members.c.member_id).where(
            members.c.member_id == member_id, members.c.union_id.in_(sa.select(tree.c.union_id))
        )
    )
    return found is not None


async def injury_details_audit(
    conn: AsyncConnection, *, report_id: uuid.UUID | None, limit: int, offset: int
) -> JSON:
    """Every attempt to read an injury report's health details, oldest first."""
    entries = await AuditTrail.entries(
        conn,
        resource_type=INJURY_DETAILS_RESOURCE,
        resource_id=str(report_id) if report_id else None,
        limit=limit,
        offset=offset,
    )
    return {
        "items": [
            {
                "report_id": e.resource_id,
                "subject": e.subject,
                "role": e.role,
                "action": e.action,
                "allowed": e.allowed,
                "reason": e.reason,
                "at": _iso(e.at),
            }
            for e in entries
        ],
        "limit": limit,
        "offset": offset,
    }


# --- statistics -------------------------------------------------------------------------------


async def enrollment_statistics(conn: AsyncConnection, *, year: int, union_id: uuid.UUID | None) -> JSON:
    """Enrolments whose coverage starts in ``year`` (cancelled ones excluded), per paid plan of the
    catalogue - the seed's "from under 20 shares a year, one type only, to over 260 across six"."""
    conditions = [
        sa.extract("year", enrollments.c.starts_on) == year,
        enrollments.c.status == "active",
    ]
    if union_id is not None:
        tree = subtree(union_id)
        conditions.append(enrollments.c.union_id.in_(sa.select(tree.c.union_id)))
    per_plan = (
        sa.select(
            enrollments.c.plan_code,
            sa.func.count().label("enrollments"),
            sa.func.sum(enrollments.c.shares).label("shares"),
            sa.func.count(sa.distinct(enrollments.c.member_id)).label("members"),
        )
        .where(*conditions)
        .group_by(enrollments.c.plan_code)
        .subquery()
    )
    rows = await conn.execute(
        sa.select(
            plans.c.code,
            plans.c.name,
            sa.func.coalesce(per_plan.c.enrollments, 0),
            sa.func.coalesce(per_plan.c.shares, 0),
            sa.func.coalesce(per_plan.c.members, 0),
        )
        .select_from(plans.outerjoin(per_plan, per_plan.c.plan_code == plans.c.code))
        .where(sa.or_(plans.c.benefit == Benefit.PAID.value, per_plan.c.plan_code.is_not(None)))
        .order_by(plans.c.position, plans.c.code)
    )
    items = [
        {"plan_code": code, "plan_name": name, "enrollments": int(n), "shares": int(s), "members": int(m)}
        for code, name, n, s, m in rows
    ]
    members_total = await conn.scalar(
        sa.select(sa.func.count(sa.distinct(enrollments.c.member_id))).where(*conditions)
    )
    return {
        "year": year,
        "union_id": str(union_id) if union_id else None,
        "total_enrollments": sum(i["enrollments"] for i in items),
        "total_shares": sum(i["shares"] for i in items),
        "members_enrolled": int(members_total or 0),
        "plans_with_enrollments": sum(1 for i in items if i["enrollments"]),
        "plans": items,
    }


# --- plan catalogue ---------------------------------------------------------------------------


async def plan_by_code(conn: AsyncConnection, code: str) -> Plan | None:
    definition = await conn.scalar(sa.select(plans.c.definition).where(plans.c.code == code))
    return Plan.model_validate(definition) if definition is not None else None


#: What an injury report is judged against, in one round trip (sent to asyncpg directly,
#: shared/driver.py): each edited plan's stream version (rows with a code; seeded defaults never
#: edited are left out), and the first earlier report of the same injury (the row without one).
_REPORT_CONTEXT = """
    SELECT code, version, NULL::date AS reported_on, NULL::int AS member_version
    FROM plans WHERE version > 0
    UNION ALL
    (SELECT NULL, NULL, reported_on, member_version FROM injury_reports
     WHERE member_id = $1 AND occurred_on = $2 ORDER BY member_version, reported_at LIMIT 1)
"""


@dataclass(frozen=True)
class ReportContext:
    #: Reports carry it, so the claims service knows when it has applied every plan edit the
    #: report came after.
    plan_versions: dict[str, int]
    first_report: FirstReport | None


async def report_context(conn: AsyncConnection, member_id: uuid.UUID, occurred_on: date) -> ReportContext:
    versions: dict[str, int] = {}
    first: FirstReport | None = None
    for row in await driver.fetch(conn, _REPORT_CONTEXT, member_id, occurred_on):
        if row["code"] is not None:
            versions[row["code"]] = int(row["version"])
        else:
            first = FirstReport(row["reported_on"], row["member_version"])
    return ReportContext(versions, first)


async def catalogue(conn: AsyncConnection) -> list[Plan]:
    rows = await conn.execute(sa.select(plans.c.definition).order_by(plans.c.position, plans.c.code))
    return [Plan.model_validate(d) for (d,) in rows]


# --- answers of commands ----------------------------------------------------------------------


def union_created(union: Union) -> JSON:
    return {"union_id": str(union.id)}


def member_created(member: Member) -> JSON:
    return {"member_id": str(member.id)}


def transfer_answer(member: Member) -> JSON:
    return {
        "member_id": str(member.id),
        "union_id": str(member.union_id),
        "transferred_on": member.last_moved_on.isoformat(),
    }


def leave_answer(member: Member) -> JSON:
    assert member.left_on is not None and member.leave_reason is not None
    return {
        "member_id": str(member.id),
        "status": "left",
        "left_on": member.left_on.isoformat(),
        "reason": member.leave_reason.value,
    }


def contact_answer(change: ContactChange) -> JSON:
    """The phone only masked; ``changed: false`` when it was the number on record already."""
    return {"member_id": str(change.member.id), "phone": mask(change.phone), "changed": change.changed}


def card_issued_answer(member: Member) -> JSON:
    card = member.cards[-1]
    return {"card_last4": card.last4, "issued_on": card.issued_on.isoformat()}


def card_cancelled_answer(member: Member) -> JSON:
    card = member.cards[-1]
    assert card.cancelled_on is not None
    return {"card_last4": card.last4, "cancelled_on": card.cancelled_on.isoformat()}


def card_replaced_answer(member: Member) -> JSON:
    old, new = member.cards[-2], member.cards[-1]
    return {"card_last4": new.last4, "replaced_card_last4": old.last4, "issued_on": new.issued_on.isoformat()}


def enrollment_created(enrollment: Enrollment) -> JSON:
    return {
        "enrollment_id": str(enrollment.enrollment_id),
        "plan_code": enrollment.plan_code,
        "shares": enrollment.shares,
        "starts_on": enrollment.starts_on.isoformat(),
        "ends_on": enrollment.ends_on.isoformat(),
        "recorded_late": enrollment.recorded_late,
        "paid_on": enrollment.paid_on.isoformat() if enrollment.paid_on else None,
    }


def enrollment_cancelled(enrollment: Enrollment) -> JSON:
    assert enrollment.cancelled_on is not None
    return {
        "enrollment_id": str(enrollment.enrollment_id),
        "status": "cancelled",
        "cancelled_on": enrollment.cancelled_on.isoformat(),
    }


def report_accepted(report: InjuryReport) -> JSON:
    return {
        "report_id": str(report.id),
        "member_id": str(report.member_id),
        "member_version": report.member_version,
    }


def plan_answer(plan: Plan) -> JSON:
    return plan.model_dump(mode="json")


def plan_defined_answer(result: PlanDefinition) -> JSON:
    return {**plan_answer(result.plan), "changed": result.changed}
