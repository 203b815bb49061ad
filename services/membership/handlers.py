"""Command handlers: load -> decide (domain) -> save, each in the caller's unit of work.

Each takes ``(uow, command, clock, ...)``: the validated request body whole (``schemas``), the
clock that says what day it is, and what the path names (the member) or the I/O a rule needs
(the vault that keeps personal data). The lookups a rule needs (the plan catalogue) are reads
in ``views``; every decision is in ``domain``. Handlers return domain results (an aggregate, an
enrolment, a ``PlanDefinition``); ``views.*_answer`` shape them as the JSON of the answer.
Also here: the reactions to ``claims.events``.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass

from services.membership import domain, views
from services.membership.domain import CataloguePlan, Enrollment, InjuryReport, Member, PaperReceipt, Union
from services.membership.projections import project_claim_event, project_claim_events
from services.membership.schemas import (
    CardCancelIn,
    CardIn,
    CardReplaceIn,
    ContactIn,
    EnrollmentCancelIn,
    EnrollmentIn,
    InjuryReportIn,
    LeaveIn,
    MemberIn,
    TransferIn,
    UnionIn,
)
from services.membership.vault import InjuryDetails, Vault, record_paper_receipt, release_paper_receipt
from shared.aggregate import Conflict, InvalidInput
from shared.clock import Clock
from shared.contracts import claims as claims_contract
from shared.contracts.plans import Plan
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.inbox import Reaction, RunReaction
from shared.unit_of_work import UnitOfWork


def _new_id() -> uuid.UUID:
    return uuid.uuid4()


# --- unions -----------------------------------------------------------------------------------


async def register_union(uow: UnitOfWork, command: UnionIn) -> Union:
    union = Union(_new_id())
    parent = await uow.load(Union, command.parent_id) if command.parent_id else None
    union.register(name=command.name, level=command.level, parent=parent)
    await uow.save(union)
    return union


# --- members ----------------------------------------------------------------------------------


async def join_member(uow: UnitOfWork, command: MemberIn, clock: Clock, *, vault: Vault) -> Member:
    today = clock()
    national_id = domain.parse_national_id(command.national_id)
    phone = domain.parse_phone(command.phone) if command.phone and command.phone.strip() else None
    member = Member(_new_id())
    member.join(
        union=await uow.load(Union, command.union_id),
        full_name=command.full_name,
        gender=command.gender,
        birth_date=command.birth_date,
        joined_on=command.joined_on or today,
        employer=command.employer,
        today=today,
    )
    domain.check_national_id_matches(national_id, birth_date=command.birth_date, gender=command.gender)
    await vault.record_identity(uow.conn, str(member.id), national_id, phone)
    await uow.save(member)
    return member


async def transfer_member(
    uow: UnitOfWork, command: TransferIn, clock: Clock, *, member_id: uuid.UUID
) -> Member:
    today = clock()
    member = await uow.get(Member, member_id, "member")
    member.transfer(
        to_union=await uow.load(Union, command.to_union_id),
        transferred_on=command.transferred_on or today,
        today=today,
    )
    await uow.save(member)
    return member


async def leave(uow: UnitOfWork, command: LeaveIn, clock: Clock, *, member_id: uuid.UUID) -> Member:
    today = clock()
    member = await uow.get(Member, member_id, "member")
    member.leave(reason=command.reason, left_on=command.left_on or today, today=today)
    await uow.save(member)
    return member


@dataclass(frozen=True)
class ContactChange:
    member: Member
    phone: str
    changed: bool


async def change_contact(
    uow: UnitOfWork, command: ContactIn, clock: Clock, *, member_id: uuid.UUID, vault: Vault
) -> ContactChange:
    """A new phone: re-encrypted in the vault, an event without the number. The same number
    again changes nothing and raises no event."""
    member = await uow.get(Member, member_id, "member")
    phone = domain.parse_phone(command.phone)
    same = await vault.phone_of(uow.conn, member.id) == phone
    changed = member.change_phone(today=clock(), same_as_recorded=same)
    if changed:
        await vault.record_phone(uow.conn, member.id, phone)
        await uow.save(member)
    return ContactChange(member, phone, changed)


# --- Jing card --------------------------------------------------------------------------------


async def issue_card(
    uow: UnitOfWork, command: CardIn, clock: Clock, *, member_id: uuid.UUID, vault: Vault
) -> Member:
    today = clock()
    member = await uow.get(Member, member_id, "member")
    number = domain.parse_card_number(command.card_number)
    member.issue_card(card_number=number, issued_on=command.issued_on or today, today=today)
    await vault.record_card_number(uow.conn, str(member.id), number)
    await uow.save(member)
    return member


async def cancel_card(
    uow: UnitOfWork, command: CardCancelIn, clock: Clock, *, member_id: uuid.UUID
) -> Member:
    today = clock()
    member = await uow.get(Member, member_id, "member")
    member.cancel_card(
        cancelled_on=command.cancelled_on or today, today=today, reason=command.reason or "cancelled"
    )
    await uow.save(member)
    return member


async def replace_card(
    uow: UnitOfWork, command: CardReplaceIn, clock: Clock, *, member_id: uuid.UUID, vault: Vault
) -> Member:
    today = clock()
    member = await uow.get(Member, member_id, "member")
    number = domain.parse_card_number(command.card_number)
    active = member.active_card
    same = (
        active is not None
        and active.last4 == number[-4:]
        and await vault.card_number_owner(uow.conn, number) == str(member.id)
    )
    member.replace_card(
        card_number=number, replaced_on=command.replaced_on or today, today=today, same_as_active=same
    )
    await vault.record_card_number(uow.conn, str(member.id), number)
    await uow.save(member)
    return member


# --- enrolments -------------------------------------------------------------------------------


async def enroll(
    uow: UnitOfWork,
    command: EnrollmentIn,
    clock: Clock,
    *,
    member_id: uuid.UUID,
    recorded_by: str | None = None,
) -> Enrollment:
    """An enrolment starting no earlier than today, or, with ``command.paper`` (the route admits
    it from supervisors only), no earlier than the receipt's payment day; the receipt is kept in
    ``paper_receipts`` under ``recorded_by`` (the supervisor) and stays off Kafka."""
    if command.paper is not None and not recorded_by:
        raise ValueError("a paper enrolment needs the supervisor who records it (recorded_by)")
    today = clock()
    member = await uow.get(Member, member_id, "member")
    plan = await views.plan_by_code(uow.conn, command.plan_code)
    if plan is None:
        raise InvalidInput(
            f"no plan {command.plan_code!r} in the catalogue", field="plan_code", code="unknown_plan"
        )
    paper = (
        PaperReceipt(reference=command.paper.receipt_reference, paid_on=command.paper.paid_on)
        if command.paper is not None
        else None
    )
    enrollment = member.enroll(
        enrollment_id=_new_id(),
        plan=plan,
        shares=command.shares,
        starts_on=command.starts_on,
        price_level=command.price_level,
        ends_on=command.ends_on,
        today=today,
        paper=paper,
    )
    await uow.save(member)
    if paper is not None and recorded_by:
        kept = await record_paper_receipt(
            uow.conn,
            enrollment_id=enrollment.enrollment_id,
            member_id=member.id,
            receipt_reference=paper.reference,
            receipt_key=paper.key,
            paid_on=paper.paid_on,
            recorded_on=today,
            recorded_by=recorded_by,
        )
        if not kept:  # raising rolls back the enrolment appended above: nothing is half-written
            raise Conflict(
                "this receipt already pays for another enrolment",
                field="paper.receipt_reference",
                code="receipt_already_used",
            )
    return enrollment


async def cancel_enrollment(
    uow: UnitOfWork,
    command: EnrollmentCancelIn,
    clock: Clock,
    *,
    member_id: uuid.UUID,
    enrollment_id: uuid.UUID,
) -> Enrollment:
    today = clock()
    member = await uow.get(Member, member_id, "member")
    enrollment = member.cancel_enrollment(
        enrollment_id=enrollment_id,
        cancelled_on=command.cancelled_on or today,
        today=today,
        reason=command.reason or "cancelled",
    )
    await uow.save(member)
    if enrollment.void:  # a paper enrolment voided: its receipt may pay for the corrected one
        await release_paper_receipt(uow.conn, enrollment_id, today)
    return enrollment


# --- injury reports ---------------------------------------------------------------------------


async def report_injury(
    uow: UnitOfWork, command: InjuryReportIn, clock: Clock, *, member_id: uuid.UUID, vault: Vault
) -> InjuryReport:
    member = await uow.get(Member, member_id, "member")
    context = await views.report_context(uow.conn, member.id, command.occurred_on)
    report = InjuryReport(_new_id())
    report.report(
        member=member,
        occurred_on=command.occurred_on,
        work_related=command.work_related,
        traffic_accident=command.traffic_accident,
        severity=command.severity,
        today=clock(),
        plan_versions=context.plan_versions,
        first_report=context.first_report,
    )
    details = InjuryDetails(command.description, command.diagnosis, command.hospital)
    await vault.record_injury_details(uow.conn, str(report.id), str(member.id), details)
    await uow.save(report)
    return report


# --- plan catalogue edits ---------------------------------------------------------------------


@dataclass(frozen=True)
class PlanDefinition:
    plan: Plan
    changed: bool


async def define_plan(uow: UnitOfWork, plan: Plan, *, code: str) -> PlanDefinition:
    """``plan``: the body as the catalogue's own type (the domain compares plans)."""
    entry = await uow.load(CataloguePlan, code)
    changed = entry.define(plan, current=await views.plan_by_code(uow.conn, code))
    if changed:
        await uow.save(entry)
    return PlanDefinition(plan, changed)


# --- reactions to claims.events ---------------------------------------------------------------


#: What membership does with each claims event: every one goes onto the member's record. A type
#: claims adds later is skipped until it is listed here (the dispatch test names it).
claim_reactions: HandlerTable[Reaction] = HandlerTable("membership.claims")


@claim_reactions.on(
    claims_contract.NoCoverageFound,
    claims_contract.ClaimDocumentsReceived,
    claims_contract.ClaimApproved,
    claims_contract.ClaimRejected,
    claims_contract.ClaimPaid,
)
async def record_claim_event(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    """A claim filed / decided / paid, or no coverage found: onto the member's record and timeline."""
    await project_claim_event(uow.conn, envelope)


async def record_claim_events(uow: UnitOfWork, envelopes: Sequence[EventEnvelope]) -> None:
    await project_claim_events(uow.conn, envelopes)


# Two per report: the claims of a batch's reports go onto their members' records together.
claim_reactions.on(claims_contract.ClaimFiled)(RunReaction(record_claim_event, record_claim_events))
