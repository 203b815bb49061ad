"""Command handlers: load -> decide (domain) -> save, each in the caller's unit of work.

A handler does the I/O a rule needs (load the union, look the plan up in the catalogue table,
keep personal data in the vault) and leaves every decision to ``domain``. Each returns the JSON
answer of its HTTP call, which ``runtime.command`` remembers under an Idempotency-Key.
Also here: the reactions to ``claims.events``.
"""

from __future__ import annotations

import uuid
from datetime import date
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from services.membership import domain
from services.membership.domain import CataloguePlan, InjuryReport, Member, Union
from services.membership.projections import project_claim_event
from services.membership.tables import plans
from services.membership.vault import InjuryDetails, Vault
from shared.aggregate import InvalidInput
from shared.contracts import claims as claims_contract
from shared.contracts.common import Gender, InjurySeverity
from shared.contracts.membership import LeaveReason, UnionLevel
from shared.contracts.plans import Plan
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.inbox import Reaction
from shared.unit_of_work import UnitOfWork

Answer = dict[str, Any]


def _new_id() -> str:
    return str(uuid.uuid4())


# --- plan catalogue lookups -------------------------------------------------------------------


async def plan_by_code(conn: AsyncConnection, code: str) -> Plan | None:
    definition = await conn.scalar(sa.select(plans.c.definition).where(plans.c.code == code))
    return Plan.model_validate(definition) if definition is not None else None


async def plan_versions(conn: AsyncConnection) -> dict[str, int]:
    """Each edited plan's stream version (seeded defaults never edited are left out). Reports
    carry it, so the claims service knows when it has applied every edit the report came after."""
    rows = await conn.execute(sa.select(plans.c.code, plans.c.version).where(plans.c.version > 0))
    return {code: int(version) for code, version in rows}


async def catalogue(conn: AsyncConnection) -> list[Plan]:
    rows = await conn.execute(sa.select(plans.c.definition).order_by(plans.c.position, plans.c.code))
    return [Plan.model_validate(d) for (d,) in rows]


# --- unions -----------------------------------------------------------------------------------


async def register_union(uow: UnitOfWork, *, name: str, level: UnionLevel, parent_id: str | None) -> Answer:
    union = Union(_new_id())
    parent = await uow.load(Union, parent_id) if parent_id else None
    union.register(name=name, level=level, parent=parent)
    await uow.save(union)
    return {"union_id": union.id}


# --- members ----------------------------------------------------------------------------------


async def join_member(
    uow: UnitOfWork,
    vault: Vault,
    *,
    union_id: str,
    full_name: str,
    gender: Gender,
    birth_date: date,
    national_id: str,
    phone: str | None,
    joined_on: date | None,
    employer: str | None,
    today: date,
) -> Answer:
    national_id = domain.parse_national_id(national_id)
    phone = domain.parse_phone(phone) if phone and phone.strip() else None
    member = Member(_new_id())
    member.join(
        union=await uow.load(Union, union_id),
        full_name=full_name,
        gender=gender,
        birth_date=birth_date,
        joined_on=joined_on or today,
        employer=employer,
        today=today,
    )
    await vault.record_identity(uow.conn, member.id, national_id, phone)
    await uow.save(member)
    return {"member_id": member.id}


async def transfer_member(
    uow: UnitOfWork, *, member_id: str, to_union_id: str, transferred_on: date | None, today: date
) -> Answer:
    member = await uow.get(Member, member_id, "member")
    member.transfer(
        to_union=await uow.load(Union, to_union_id), transferred_on=transferred_on or today, today=today
    )
    await uow.save(member)
    return {
        "member_id": member.id,
        "union_id": member.union_id,
        "transferred_on": (transferred_on or today).isoformat(),
    }


async def leave(
    uow: UnitOfWork, *, member_id: str, reason: LeaveReason, left_on: date | None, today: date
) -> Answer:
    member = await uow.get(Member, member_id, "member")
    member.leave(reason=reason, left_on=left_on or today, today=today)
    await uow.save(member)
    return {
        "member_id": member.id,
        "status": "left",
        "left_on": (left_on or today).isoformat(),
        "reason": reason,
    }


# --- Jing card --------------------------------------------------------------------------------


async def issue_card(
    uow: UnitOfWork, vault: Vault, *, member_id: str, card_number: str, issued_on: date | None, today: date
) -> Answer:
    member = await uow.get(Member, member_id, "member")
    number = domain.parse_card_number(card_number)
    last4 = member.issue_card(card_number=number, issued_on=issued_on or today, today=today)
    await vault.record_card_number(uow.conn, member.id, number)
    await uow.save(member)
    return {"card_last4": last4, "issued_on": (issued_on or today).isoformat()}


async def cancel_card(
    uow: UnitOfWork, *, member_id: str, cancelled_on: date | None, reason: str | None, today: date
) -> Answer:
    member = await uow.get(Member, member_id, "member")
    last4 = member.cancel_card(cancelled_on=cancelled_on or today, today=today, reason=reason or "cancelled")
    await uow.save(member)
    return {"card_last4": last4, "cancelled_on": (cancelled_on or today).isoformat()}


async def replace_card(
    uow: UnitOfWork, vault: Vault, *, member_id: str, card_number: str, replaced_on: date | None, today: date
) -> Answer:
    member = await uow.get(Member, member_id, "member")
    number = domain.parse_card_number(card_number)
    active = member.active_card
    same = (
        active is not None
        and active.last4 == number[-4:]
        and await vault.card_number_owner(uow.conn, number) == member.id
    )
    old, new = member.replace_card(
        card_number=number, replaced_on=replaced_on or today, today=today, same_as_active=same
    )
    await vault.record_card_number(uow.conn, member.id, number)
    await uow.save(member)
    return {"card_last4": new, "replaced_card_last4": old, "issued_on": (replaced_on or today).isoformat()}


# --- enrolments -------------------------------------------------------------------------------


async def enroll(
    uow: UnitOfWork,
    *,
    member_id: str,
    plan_code: str,
    shares: int,
    starts_on: date,
    price_level: Decimal | None,
    ends_on: date | None,
    today: date,
) -> Answer:
    member = await uow.get(Member, member_id, "member")
    plan = await plan_by_code(uow.conn, plan_code)
    if plan is None:
        raise InvalidInput(f"no plan {plan_code!r} in the catalogue", field="plan_code", code="unknown_plan")
    enrollment = member.enroll(
        enrollment_id=_new_id(),
        plan=plan,
        shares=shares,
        starts_on=starts_on,
        price_level=price_level,
        ends_on=ends_on,
        today=today,
    )
    await uow.save(member)
    return {
        "enrollment_id": enrollment.enrollment_id,
        "plan_code": enrollment.plan_code,
        "shares": enrollment.shares,
        "starts_on": enrollment.starts_on.isoformat(),
        "ends_on": enrollment.ends_on.isoformat(),
    }


async def cancel_enrollment(
    uow: UnitOfWork,
    *,
    member_id: str,
    enrollment_id: str,
    cancelled_on: date | None,
    reason: str | None,
    today: date,
) -> Answer:
    member = await uow.get(Member, member_id, "member")
    enrollment = member.cancel_enrollment(
        enrollment_id=enrollment_id,
        cancelled_on=cancelled_on or today,
        today=today,
        reason=reason or "cancelled",
    )
    await uow.save(member)
    assert enrollment.cancelled_on is not None
    return {
        "enrollment_id": enrollment.enrollment_id,
        "status": "cancelled",
        "cancelled_on": enrollment.cancelled_on.isoformat(),
    }


# --- injury reports ---------------------------------------------------------------------------


async def report_injury(
    uow: UnitOfWork,
    vault: Vault,
    *,
    member_id: str,
    occurred_on: date,
    work_related: bool,
    details: InjuryDetails,
    traffic_accident: bool,
    severity: InjurySeverity,
    today: date,
) -> Answer:
    member = await uow.get(Member, member_id, "member")
    report = InjuryReport(_new_id())
    report.report(
        member=member,
        occurred_on=occurred_on,
        work_related=work_related,
        traffic_accident=traffic_accident,
        severity=severity,
        today=today,
        plan_versions=await plan_versions(uow.conn),
    )
    await vault.record_injury_details(uow.conn, report.id, member.id, details)
    await uow.save(report)
    return {"report_id": report.id, "member_id": member.id, "member_version": member.version}


# --- plan catalogue edits ---------------------------------------------------------------------


async def define_plan(uow: UnitOfWork, code: str, plan: Plan) -> Answer:
    entry = await uow.load(CataloguePlan, code)
    changed = entry.define(plan, current=await plan_by_code(uow.conn, code))
    if changed:
        await uow.save(entry)
    return {**plan.model_dump(mode="json"), "changed": changed}


# --- reactions to claims.events ---------------------------------------------------------------


#: What membership does with each claims event: every one goes onto the member's record. A type
#: claims adds later is skipped until it is listed here (the dispatch test names it).
claim_reactions: HandlerTable[Reaction] = HandlerTable("membership.claims")


@claim_reactions.on(
    claims_contract.ClaimFiled,
    claims_contract.NoCoverageFound,
    claims_contract.ClaimDocumentsReceived,
    claims_contract.ClaimApproved,
    claims_contract.ClaimRejected,
    claims_contract.ClaimPaid,
)
async def record_claim_event(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    """A claim filed / decided / paid, or no coverage found: onto the member's record and timeline."""
    await project_claim_event(uow.conn, envelope)
