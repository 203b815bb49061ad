"""Use cases of the claims service: each loads state, lets the domain decide, and saves.

The reactions to ``membership.events`` (the coverage consumer) and the staff commands. Reads
a rule needs are ``views`` (enrolment facts) or the coverage model's loaders (``projections``).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert

from services.claims import domain, views
from services.claims import tables as t
from services.claims.projections import (
    ReportFacts,
    apply_membership_event,
    load_plans,
    note_member_version,
    plan_versions,
    report_facts,
    seen_version,
)
from services.claims.schemas import ApproveIn, DocumentsIn, IllnessClaimIn, RejectIn
from shared import tracing
from shared.aggregate import Aggregate, InvalidInput, NotFound
from shared.clock import Clock
from shared.contracts import membership as m
from shared.contracts.plans import Plan
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.inbox import Lock, Reaction
from shared.locks import LockSpace
from shared.unit_of_work import UnitOfWork

# --- reacting to membership.events ---------------------------------------------------------------


def coverage_locks(envelope: EventEnvelope) -> list[Lock]:
    """What a membership event's reaction must hold, taken for the whole batch by the consumer.

    - the member: a report parked by one partition's batch and the member event that releases
      it, in another partition's batch at the same moment, would otherwise miss each other's
      uncommitted rows;
    - the catalogue, shared by every batch and exclusive for a plan change: a plan change
      releases reports of any member, so it must see every parked report committed, and no
      report may be decided against a catalogue half-way through a change.
    """
    locks = [Lock(LockSpace.CATALOGUE, "catalogue", exclusive=envelope.aggregate_type == "Plan")]
    member_id = _member_in(envelope)
    if member_id is not None:
        locks.append(Lock(LockSpace.MEMBER, str(member_id)))
    return locks


#: The reactions of the coverage consumer to ``membership.events``. Each keeps the coverage model
#: (``apply_membership_event``), then decides what may now be decided. The consumer hands events
#: over in stream order (never a version twice or out of turn) and holds ``coverage_locks``.
#: Each takes the clock that dates the claims it files; ``reactions(clock)`` binds it.
CoverageReaction = Callable[[UnitOfWork, EventEnvelope, Clock], Awaitable[None]]
coverage_reactions: HandlerTable[CoverageReaction] = HandlerTable("claims.coverage")


def reactions(clock: Clock) -> HandlerTable[Reaction]:
    """The coverage consumer's table, every reaction bound to ``clock``."""

    def bind(react: CoverageReaction) -> Reaction:
        async def bound(uow: UnitOfWork, envelope: EventEnvelope) -> None:
            await react(uow, envelope, clock)

        return bound

    return coverage_reactions.map(bind)


def _decoded(envelope: EventEnvelope) -> DomainEvent:
    return m.registry.decode(envelope.event_type, envelope.schema_version, envelope.data)


@coverage_reactions.on(
    m.UnionRegistered,
    m.MemberJoined,
    m.MemberTransferred,
    m.MemberLeft,
    m.MemberPhoneChanged,
    m.CardIssued,
    m.CardCancelled,
    m.PlanEnrolled,
    m.EnrollmentCancelled,
)
async def on_member_fact(uow: UnitOfWork, envelope: EventEnvelope, clock: Clock) -> None:
    """A fact about a member (or a union): into coverage; a member-stream version may release
    parked reports."""
    await apply_membership_event(uow.conn, _decoded(envelope), envelope.aggregate_version)
    member_id = _member_in(envelope)
    if member_id is not None and envelope.aggregate_id == str(member_id):
        await _advance(uow, member_id, envelope.aggregate_version, clock)


@coverage_reactions.on(m.InjuryReported)
async def on_injury_report(uow: UnitOfWork, envelope: EventEnvelope, clock: Clock) -> None:
    event = _decoded(envelope)
    assert isinstance(event, m.InjuryReported)
    await apply_membership_event(uow.conn, event, envelope.aggregate_version)
    await on_injury_reported(uow, event, envelope, clock)


@coverage_reactions.on(m.PlanDefined)
async def on_plan_defined(uow: UnitOfWork, envelope: EventEnvelope, clock: Clock) -> None:
    """A catalogue edit: into coverage's plans; reports waiting for it may now be decided."""
    await apply_membership_event(uow.conn, _decoded(envelope), envelope.aggregate_version)
    uow.memo.pop(_CATALOGUE, None)
    await decide_pending_reports(uow, clock)


@coverage_reactions.unregistered
async def on_newer_member_event(uow: UnitOfWork, envelope: EventEnvelope, clock: Clock) -> None:
    """A type added upstream after this release: nothing to apply, but on a Member stream it is
    still a version of the member's stream, and reports may be waiting for exactly that version."""
    member_id = _member_in(envelope)
    if member_id is not None and envelope.aggregate_type == "Member":
        await _advance(uow, member_id, envelope.aggregate_version, clock)


def _member_in(envelope: EventEnvelope) -> uuid.UUID | None:
    """The member an event is about: the stream itself for Member events (whatever their type,
    known or not), else the payload's member_id."""
    try:
        if envelope.aggregate_type == "Member":
            return uuid.UUID(envelope.aggregate_id)
        raw = envelope.data.get("member_id")
        return uuid.UUID(str(raw)) if raw else None
    except ValueError:
        return None


async def _advance(uow: UnitOfWork, member_id: uuid.UUID, version: int, clock: Clock) -> None:
    await note_member_version(uow.conn, member_id, version)
    await decide_pending_reports(uow, clock, member_id)


async def on_injury_reported(
    uow: UnitOfWork, event: m.InjuryReported, envelope: EventEnvelope, clock: Clock
) -> None:
    """Decide now if this service knows everything the report was made against; else park it.

    The report names the member-stream version and each edited plan's version it was made at.
    Deciding on an older view could miss an enrolment, a card or the plan an enrolment is in,
    and "the member forgot the second claim" again.
    """
    facts = await report_facts(uow.conn, event.member_id, event.report_id)
    known = domain.Knowledge(facts.seen_version, (await _catalogue(uow)).versions)
    if known.covers(_needed(event)):
        await decide(uow, _injury(event), clock, facts=facts)
        return
    await uow.conn.execute(
        pg_insert(t.pending_reports)
        .values(
            report_id=event.report_id,
            member_id=event.member_id,
            needed_version=event.member_version,
            injury=event.model_dump(mode="json"),
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            trace_context=tracing.current_carrier(),
        )
        .on_conflict_do_nothing()
    )


def _needed(event: m.InjuryReported) -> domain.Knowledge:
    return domain.Knowledge(event.member_version, event.plan_versions)


async def decide_pending_reports(uow: UnitOfWork, clock: Clock, member_id: uuid.UUID | None = None) -> None:
    """Decide the parked reports (of one member, or of everybody after a plan change) whose member
    and plan versions this service has now caught up with."""
    pending = t.pending_reports
    query = sa.select(pending.c.report_id, pending.c.member_id, pending.c.injury)
    if member_id is not None:
        query = query.where(pending.c.member_id == member_id)
    versions = (await _catalogue(uow)).versions
    ready: list[uuid.UUID] = []
    for report_id, member, injury in (await uow.conn.execute(query)).all():
        known = domain.Knowledge(await seen_version(uow.conn, member), versions)
        if known.covers(_needed(m.InjuryReported.model_validate(injury))):
            ready.append(report_id)
    if not ready:
        return
    rows = (
        await uow.conn.execute(
            sa.delete(pending)
            .where(pending.c.report_id.in_(ready))
            .returning(
                pending.c.injury, pending.c.correlation_id, pending.c.causation_id, pending.c.trace_context
            )
        )
    ).all()
    upstream = (uow.correlation_id, uow.causation_id)
    for injury, correlation_id, causation_id, trace in sorted(rows, key=lambda r: str(r[0]["report_id"])):
        # The claims belong to the report's flow and are caused by it, not by this member event
        # (and, while tracing is on, to the report's trace).
        uow.correlation_id, uow.causation_id = correlation_id, causation_id
        with tracing.continued(
            "InjuryReported decide", trace, **{"union.report_id": str(injury["report_id"])}
        ):
            await decide(uow, _injury(m.InjuryReported.model_validate(injury)), clock)
    uow.correlation_id, uow.causation_id = upstream


async def decide(
    uow: UnitOfWork, injury: domain.Injury, clock: Clock, *, facts: ReportFacts | None = None
) -> domain.EntitlementCheck | None:
    """File every claim the injury entitles the member to, or record that there is none.

    One decision per report, whatever path leads here again (redelivery, a replay into a fresh
    inbox, a parked copy): a report already decided either way is left as it is. Returns None
    then."""
    if facts is None:  # a parked report, released later: read them now
        facts = await report_facts(uow.conn, injury.member_id, injury.report_id)
    if facts.decided:
        return None
    coverage = facts.coverage
    check = domain.entitlements(injury, coverage, (await _catalogue(uow)).plans)
    # Not decided yet, so neither the decision nor any claim of this report exists (their ids
    # derive from the report, and the member lock keeps a second decider out): no need to load
    # them. Were that ever wrong, the append would conflict rather than file anything twice.
    if not check.entitlements:
        decision = domain.ReportDecision(injury.report_id)
        decision.no_coverage(injury.report_id, injury.member_id, check.reasons)
        await uow.save(decision)
        return check
    today = clock()
    claims: list[Aggregate[uuid.UUID]] = []
    for ent in check.entitlements:
        claim = domain.Claim(ent.claim_id)
        claim.file(
            member_id=injury.member_id,
            plan_code=ent.plan_code,
            benefit=ent.benefit,
            enrollment_id=ent.enrollment_id,
            report_id=injury.report_id,
            required=ent.required_documents,
            incident_on=injury.occurred_on,
            today=today,
        )
        claims.append(claim)
    await uow.save_all(claims)
    return check


_CATALOGUE = "claims.catalogue"


@dataclass(frozen=True)
class _Catalogue:
    versions: dict[str, int]
    plans: dict[str, Plan]


#: The last catalogue read per database, kept across transactions: a plan's body only changes
#: with its version, so equal versions mean equal plans and the bodies need not be read and
#: validated again by every batch.
_LAST_CATALOGUE: dict[tuple[str | None, int | None, str | None], _Catalogue] = {}


async def _catalogue(uow: UnitOfWork) -> _Catalogue:
    """The plan catalogue and each plan's version, read once per transaction (a consumer batch decides
    hundreds of reports against it); a ``PlanDefined`` drops it."""
    cached: _Catalogue | None = uow.memo.get(_CATALOGUE)
    if cached is None:
        versions = await plan_versions(uow.conn)
        url = uow.conn.engine.url
        database = (url.host, url.port, url.database)  # one entry per database, wherever it is
        last = _LAST_CATALOGUE.get(database)
        if last is None or last.versions != versions:
            last = _LAST_CATALOGUE[database] = _Catalogue(versions, await load_plans(uow.conn))
        cached = uow.memo[_CATALOGUE] = last
    return cached


def _injury(e: m.InjuryReported) -> domain.Injury:
    return domain.Injury(
        e.report_id,
        e.member_id,
        e.occurred_on,
        e.work_related,
        e.traffic_accident,
        e.severity,
        reported_on=e.reported_on,
        member_version=e.member_version,
        first_reported_on=e.first_reported_on,
        first_member_version=e.first_member_version,
    )


# --- staff commands ------------------------------------------------------------------------------
# Each takes ``(uow, command, clock, ...)`` and returns the claim; ``views.claim_answer`` shapes it.


async def _plan(uow: UnitOfWork, code: str) -> Plan:
    plan = (await load_plans(uow.conn)).get(code)
    if plan is None:
        raise NotFound(f"plan {code} is not in the catalogue")
    return plan


async def limit_for(uow: UnitOfWork, claim: domain.Claim) -> domain.BenefitLimit:
    s = claim.state
    assert s.incident_on is not None
    enrollment = await views.enrollment_fact(uow.conn, s.enrollment_id)
    return domain.benefit_limit(
        await _plan(uow, s.plan_code),
        enrollment.shares if enrollment else 1,
        enrollment.starts_on if enrollment else None,
        s.incident_on,
    )


async def receive_documents(uow: UnitOfWork, command: DocumentsIn, *, claim_id: uuid.UUID) -> domain.Claim:
    claim = await uow.get(domain.Claim, claim_id, "claim")
    claim.receive_documents(list(command.documents))
    await uow.save(claim)
    return claim


async def approve(uow: UnitOfWork, command: ApproveIn, clock: Clock, *, claim_id: uuid.UUID) -> domain.Claim:
    claim = await uow.get(domain.Claim, claim_id, "claim")
    claim.approve(command.amount, await limit_for(uow, claim), clock())
    await uow.save(claim)
    return claim


async def reject(uow: UnitOfWork, command: RejectIn, clock: Clock, *, claim_id: uuid.UUID) -> domain.Claim:
    claim = await uow.get(domain.Claim, claim_id, "claim")
    claim.reject(command.reason_code, command.note, clock())
    await uow.save(claim)
    return claim


async def pay(uow: UnitOfWork, clock: Clock, *, claim_id: uuid.UUID) -> domain.Claim:
    """Pay the approved amount (the command has no body: the claim says what is owed)."""
    claim = await uow.get(domain.Claim, claim_id, "claim")
    claim.pay(clock())
    await uow.save(claim)
    return claim


async def file_illness_claim(uow: UnitOfWork, command: IllnessClaimIn, clock: Clock) -> domain.Claim:
    """Staff file illness/hospitalisation claims; inside a waiting period the claim is filed and
    rejected at once with the coded reason, so the member's record shows why."""
    plan = (await load_plans(uow.conn)).get(command.plan_code)
    if plan is None:
        raise InvalidInput(f"unknown plan {command.plan_code}", field="plan_code")
    enrollment = await views.enrollment_fact(uow.conn, command.enrollment_id)
    if (
        enrollment is not None
        and (await views.enrollment_member(uow.conn, command.enrollment_id)) != command.member_id
    ):
        enrollment = None
    today = clock()
    if command.incident_on > today:
        raise InvalidInput("the incident date is in the future", field="incident_on")
    limit = domain.illness_claim_check(plan, enrollment, command.incident_on)
    claim = await uow.load(domain.Claim, domain.illness_claim_id(command.enrollment_id, command.incident_on))
    claim.file(
        member_id=command.member_id,
        plan_code=command.plan_code,
        benefit=plan.benefit,
        enrollment_id=command.enrollment_id,
        report_id=None,
        required=domain.required_documents(plan.claim_kind),
        incident_on=command.incident_on,
        today=today,
    )
    if limit.amount == 0:
        claim.reject(domain.RejectionReason.WAITING_PERIOD, limit.reason, today)
    await uow.save(claim)
    return claim
