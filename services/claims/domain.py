"""The claims rules. Pure: no I/O, no framework; plans and coverage facts are passed in.

Two decisions live here:
- what an injury entitles a member to (``entitlements``), which the automatic reaction to
  ``InjuryReported`` and the staff "what could they claim" view both use;
- a claim's lifecycle (``Claim``): documents, approval within the plan's limit, rejection with a
  coded reason, payment.
"""

from __future__ import annotations

import calendar
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import Decimal
from enum import StrEnum

from shared.aggregate import Aggregate, Conflict, InvalidInput, applies
from shared.contracts.claims import (
    ClaimApproved,
    ClaimDocumentsReceived,
    ClaimFiled,
    ClaimPaid,
    ClaimRejected,
    NoCoverageFound,
)
from shared.contracts.common import Benefit, InjurySeverity
from shared.contracts.plans import ClaimKind, Plan

CARD_PLAN = "card_non_work_accident"
ACCIDENT_PLAN = "accident_injury"

#: Claim ids are derived, never drawn: the same (report, plan, enrolment) is the same claim,
#: however often the report is delivered or replayed, and whichever consumer handles it.
CLAIM_NAMESPACE = uuid.UUID("6f1c1e0a-8a53-4d0e-9a76-0d3f7c2b9e11")


def claim_id_for(report_id: uuid.UUID, plan_code: str, enrollment_id: uuid.UUID | None) -> uuid.UUID:
    return uuid.uuid5(CLAIM_NAMESPACE, f"{report_id}/{plan_code}/{enrollment_id or 'card'}")


# --- coverage facts (what the local read model knows about a member) --------------------------


def _after(version: int | None, known_at: int) -> bool:
    """A fact at ``version`` of the member's stream came after ``known_at`` (None: a fact applied
    before versions were kept, taken as known)."""
    return version is not None and version > known_at


@dataclass(frozen=True)
class CardSpell:
    card_last4: str
    issued_on: date
    cancelled_on: date | None = None
    #: Member-stream versions of the issue and the cancellation (None: not kept then).
    issued_version: int | None = None
    cancelled_version: int | None = None

    def active_on(self, day: date) -> bool:
        return self.issued_on <= day and (self.cancelled_on is None or day < self.cancelled_on)


@dataclass(frozen=True)
class EnrollmentFact:
    enrollment_id: uuid.UUID
    plan_code: str
    shares: int
    starts_on: date
    ends_on: date  # inclusive
    cancelled_on: date | None = None
    #: The day membership recorded it (None: unknown, events written before it was carried).
    recorded_on: date | None = None
    #: Its version in the member's stream (None: applied before this was kept), and that of
    #: its cancellation.
    recorded_version: int | None = None
    cancelled_version: int | None = None

    def recorded_after(self, injury: Injury) -> bool:
        """Recorded after the report was made: it never covers that injury (no backdating).

        The report names the member-stream version it was made against, so an enrolment at a
        later version came after it, even on the same day; the dates alone cannot tell a
        same-day enrolment recorded after the report from one recorded before it, and whether
        this service had applied it yet would decide (the race the review found). The dates
        still judge what carries no versions. Judged against the injury's *first* report:
        reporting it again after an enrolment was recorded does not make it cover the injury."""
        known_on, known_at = injury.known_on, injury.known_at_version
        if known_on is None:  # a "what if" of the entitlements view: no report
            return False
        if known_at is not None and _after(self.recorded_version, known_at):
            return True
        return self.recorded_on is not None and known_on < self.recorded_on

    def covers(self, day: date) -> bool:
        in_period = self.starts_on <= day <= self.ends_on
        return in_period and (self.cancelled_on is None or day < self.cancelled_on)


@dataclass(frozen=True)
class MemberCoverage:
    member_id: uuid.UUID
    joined_on: date
    left_on: date | None = None
    cards: tuple[CardSpell, ...] = ()
    enrollments: tuple[EnrollmentFact, ...] = ()
    left_version: int | None = None

    def as_known_at(self, version: int) -> MemberCoverage:
        """The coverage as the member's stream held it at ``version``: what a report made then
        is decided on, whenever claims gets to decide it. A leave, a card or a cancellation
        recorded later (however it is dated) is not part of it; enrolments recorded later stay,
        so that ``entitlements`` can name them ``enrolled_after_report``, and never cover."""
        return replace(
            self,
            left_on=None if _after(self.left_version, version) else self.left_on,
            left_version=None if _after(self.left_version, version) else self.left_version,
            cards=tuple(
                replace(c, cancelled_on=None, cancelled_version=None)
                if _after(c.cancelled_version, version)
                else c
                for c in self.cards
                if not _after(c.issued_version, version)
            ),
            enrollments=tuple(
                replace(e, cancelled_on=None, cancelled_version=None)
                if _after(e.cancelled_version, version)
                else e
                for e in self.enrollments
            ),
        )

    def in_service_on(self, day: date) -> bool:
        # The day of leaving is still a day of membership (membership's rule, one for both).
        return self.joined_on <= day and (self.left_on is None or day <= self.left_on)

    def left_before(self, day: date) -> bool:
        """Left before ``day``: the free Jing-card benefit ended on the day of leaving; paid
        enrolments stay in force to their end date (they were bought for the term)."""
        return self.left_on is not None and day > self.left_on


@dataclass(frozen=True)
class Injury:
    report_id: uuid.UUID
    member_id: uuid.UUID
    occurred_on: date
    work_related: bool
    traffic_accident: bool = False
    severity: InjurySeverity = InjurySeverity.INJURY
    #: When it was reported (None: a "what if" of the entitlements view, no reporting limit).
    reported_on: date | None = None
    #: The member-stream version the report was made against (None: a "what if").
    member_version: int | None = None
    #: The first report of this same injury, when it was reported before (see InjuryReported).
    first_reported_on: date | None = None
    first_member_version: int | None = None

    @property
    def known_on(self) -> date | None:
        """The day the injury was first reported: enrolments recorded after it never cover it."""
        return self.first_reported_on or self.reported_on

    @property
    def known_at_version(self) -> int | None:
        """The member-stream version at its first report (see ``known_on``)."""
        return self.first_member_version or self.member_version


def add_months(day: date, months: int) -> date:
    """Same day of the month ``months`` later, clamped to the month's end (29 Feb + 12 = 28 Feb)."""
    index = day.month - 1 + months
    year, month = day.year + index // 12, index % 12 + 1
    return date(year, month, min(day.day, calendar.monthrange(year, month)[1]))


def reporting_deadline(plan: Plan, occurred_on: date) -> date:
    """The last day an incident may be reported for ``plan`` (inclusive)."""
    return add_months(occurred_on, plan.reporting_limit_months)


@dataclass(frozen=True)
class Entitlement:
    claim_id: uuid.UUID
    plan_code: str
    benefit: Benefit
    enrollment_id: uuid.UUID | None
    required_documents: tuple[str, ...]


@dataclass(frozen=True)
class EntitlementCheck:
    entitlements: tuple[Entitlement, ...]
    reasons: tuple[str, ...]  # why each possible benefit does or does not apply


class Document(StrEnum):
    UNION_INCIDENT_CERTIFICATE = "union_incident_certificate"
    DIAGNOSIS_AND_HOSPITAL_RECORDS = "diagnosis_and_hospital_records"  # grade-2+ Beijing hospital
    ID_COPY = "id_copy"
    CARD_COPY = "card_copy"
    TRAFFIC_ACCIDENT_CERTIFICATE = "traffic_accident_certificate"
    DISABILITY_ASSESSMENT = "disability_assessment"  # after treatment, or as of day 180
    DEATH_CERTIFICATE = "death_certificate"  # with the household-register cancellation
    HOSPITAL_DISCHARGE_SUMMARY = "hospital_discharge_summary"


def required_documents(
    kind: ClaimKind, *, traffic_accident: bool = False, severity: InjurySeverity = InjurySeverity.INJURY
) -> tuple[str, ...]:
    """The checklist for ONE claim: each claim gets its own set of copies (the seed's two sets)."""
    docs = [
        Document.UNION_INCIDENT_CERTIFICATE,
        Document.DIAGNOSIS_AND_HOSPITAL_RECORDS,
        Document.ID_COPY,
        Document.CARD_COPY,
    ]
    if kind is ClaimKind.HOSPITALIZATION:
        docs.append(Document.HOSPITAL_DISCHARGE_SUMMARY)
    if traffic_accident:
        docs.append(Document.TRAFFIC_ACCIDENT_CERTIFICATE)
    if severity is InjurySeverity.DISABILITY:
        docs.append(Document.DISABILITY_ASSESSMENT)
    if severity is InjurySeverity.DEATH:
        docs.append(Document.DEATH_CERTIFICATE)
    return tuple(d.value for d in docs)


@dataclass(frozen=True)
class Knowledge:
    """How far this service has followed the facts a report depends on: the member's stream and
    the plan catalogue. A report is decided only once what is known covers what it was made at."""

    member_version: int
    plan_versions: Mapping[str, int]

    def covers(self, needed: Knowledge) -> bool:
        return self.member_version >= needed.member_version and all(
            self.plan_versions.get(code, 0) >= v for code, v in needed.plan_versions.items()
        )


def entitlements(injury: Injury, coverage: MemberCoverage | None, plans: dict[str, Plan]) -> EntitlementCheck:
    """Every claim this injury entitles the member to, with the reasons for what it does not.

    Driven by the catalogue: every plan whose ``claim_kind`` is ``injury`` is considered. A paid
    plan opens one claim per enrolment covering the day (work-related or not); a card plan opens
    one claim if a Jing card was active that day, the member had not left before it (the card
    benefit ends on the day of leaving; paid enrolments stay in force to their end date) and the
    injury was not work-related. For a paid
    plan ``active`` only closes it to *new* enrolments (cover already bought still pays); for a
    card plan, which nobody enrols in, it means the benefit is withdrawn. An injury reported
    after a plan's reporting limit opens nothing under that plan (``reporting_limit_passed``).
    """
    day = injury.occurred_on
    if coverage is None:
        return EntitlementCheck((), ("member_unknown: no membership record for this member",))
    if injury.member_version is not None:
        coverage = coverage.as_known_at(injury.member_version)
    if day < coverage.joined_on:
        return EntitlementCheck((), (f"not_a_member_on_date: not an in-service member on {day}",))

    found: list[Entitlement] = []
    reasons: list[str] = []
    docs = required_documents(
        ClaimKind.INJURY, traffic_accident=injury.traffic_accident, severity=injury.severity
    )
    for plan in sorted((p for p in plans.values() if p.claim_kind is ClaimKind.INJURY), key=lambda p: p.code):
        if injury.reported_on is not None and injury.reported_on > reporting_deadline(plan, day):
            reasons.append(
                f"reporting_limit_passed: {plan.code} incidents must be reported within "
                f"{plan.reporting_limit_months} months (by {reporting_deadline(plan, day)})"
            )
            continue
        if plan.benefit is Benefit.PAID:
            mine = [e for e in coverage.enrollments if e.plan_code == plan.code]
            late = [e for e in mine if e.covers(day) and e.recorded_after(injury)]
            covering = sorted(
                (e for e in mine if e.covers(day) and e not in late), key=lambda e: str(e.enrollment_id)
            )
            for e in covering:
                found.append(
                    Entitlement(
                        claim_id_for(injury.report_id, plan.code, e.enrollment_id),
                        plan.code,
                        Benefit.PAID,
                        e.enrollment_id,
                        docs,
                    )
                )
            if covering:
                reasons.append(f"covered: {len(covering)} {plan.code} enrolment(s) cover {day}")
            elif late:
                reasons.append(
                    f"enrolled_after_report: {plan.code} enrolment(s) covering {day} were recorded "
                    f"after the report of {injury.reported_on}"
                )
            elif mine:
                reasons.append(f"not_covered_on_date: no {plan.code} enrolment covers {day}")
            else:
                reasons.append(f"no_enrollment: no {plan.code} enrolment")
            continue
        card = next((c for c in coverage.cards if c.active_on(day)), None)
        if not plan.active:
            # Nobody enrols in a card benefit, so for it "inactive" can only mean "withdrawn".
            reasons.append(f"plan_inactive: {plan.code} is no longer offered")
        elif coverage.left_before(day):
            assert coverage.left_on is not None
            reasons.append(
                f"member_left: the Jing card benefit ended when the member left on {coverage.left_on}"
            )
        elif card is None:
            reasons.append(f"no_active_card: no active Jing card on {day}")
        elif injury.work_related:
            reasons.append(f"work_related: {plan.code} covers non-work accidents only")
        else:
            found.append(
                Entitlement(
                    claim_id_for(injury.report_id, plan.code, None), plan.code, Benefit.CARD, None, docs
                )
            )
            reasons.append(f"covered: Jing card *{card.card_last4} active on {day}")
    return EntitlementCheck(tuple(found), tuple(reasons))


# --- benefit limits ----------------------------------------------------------------------------


@dataclass(frozen=True)
class BenefitLimit:
    amount: Decimal | None  # None: the catalogue states no limit
    reason: str


def benefit_limit(plan: Plan, shares: int, starts_on: date | None, incident_on: date) -> BenefitLimit:
    """The most this claim may pay. Waiting periods count days since the coverage started."""
    if starts_on is not None and plan.waiting_days:
        days = (incident_on - starts_on).days
        # "diagnosed within 30 days of the start: nothing; 30-60 days: 500 CNY; over 60: full"
        if days <= plan.waiting_days:
            return BenefitLimit(Decimal(0), f"waiting_period: day {days} of {plan.waiting_days}")
        if days <= plan.reduced_benefit_until_days and plan.reduced_benefit_amount is not None:
            return BenefitLimit(
                plan.reduced_benefit_amount,
                f"reduced_benefit: day {days} <= {plan.reduced_benefit_until_days}",
            )
    limits = []
    if plan.benefit_per_share is not None:
        limits.append(plan.benefit_per_share * shares)
    if plan.max_benefit is not None:
        limits.append(plan.max_benefit)
    if not limits:
        return BenefitLimit(None, "no limit in the catalogue")
    return BenefitLimit(min(limits), "plan limit")


# --- the claim ---------------------------------------------------------------------------------


class ClaimStatus(StrEnum):
    FILED = "filed"
    DOCUMENTS_PARTIAL = "documents_partial"
    DOCUMENTS_COMPLETE = "documents_complete"
    APPROVED = "approved"
    REJECTED = "rejected"
    PAID = "paid"


class RejectionReason(StrEnum):
    NOT_COVERED_ON_DATE = "not_covered_on_date"
    WAITING_PERIOD = "waiting_period"
    EXCLUDED = "excluded"
    PRE_EXISTING_CONDITION = "pre_existing_condition"
    DOCUMENTS_NOT_PROVIDED = "documents_not_provided"
    DUPLICATE = "duplicate"
    OTHER = "other"


OPEN = frozenset({ClaimStatus.FILED, ClaimStatus.DOCUMENTS_PARTIAL, ClaimStatus.DOCUMENTS_COMPLETE})


@dataclass
class ClaimState:
    member_id: uuid.UUID | None = None
    plan_code: str = ""
    benefit: Benefit = Benefit.PAID
    enrollment_id: uuid.UUID | None = None
    report_id: uuid.UUID | None = None
    incident_on: date | None = None
    required: tuple[str, ...] = ()
    received: set[str] = field(default_factory=set)
    status: ClaimStatus = ClaimStatus.FILED
    approved_amount: Decimal | None = None


class Claim(Aggregate[uuid.UUID]):
    stream_type = "Claim"

    def __init__(self, aggregate_id: uuid.UUID) -> None:
        super().__init__(aggregate_id)
        self.state = ClaimState()

    # commands

    def file(
        self,
        *,
        member_id: uuid.UUID,
        plan_code: str,
        benefit: Benefit,
        enrollment_id: uuid.UUID | None,
        report_id: uuid.UUID | None,
        required: tuple[str, ...],
        incident_on: date,
        today: date,
    ) -> None:
        if self.exists:
            raise Conflict(f"claim {self.id} is already filed")
        self._raise(
            ClaimFiled(
                claim_id=self.id,
                member_id=member_id,
                report_id=report_id,
                plan_code=plan_code,
                benefit=benefit,
                enrollment_id=enrollment_id,
                required_documents=list(required),
                incident_on=incident_on,
                filed_on=today,
            )
        )

    def receive_documents(self, documents: list[str]) -> None:
        self._require_open("receive documents for")
        unknown = sorted(set(documents) - set(self.state.required))
        if unknown:
            raise InvalidInput(
                f"not on this claim's checklist: {', '.join(unknown)} "
                f"(expected some of: {', '.join(self.state.required)})",
                field="documents",
            )
        received = self.state.received | set(documents)
        missing = [d for d in self.state.required if d not in received]
        self._raise(
            ClaimDocumentsReceived(
                claim_id=self.id,
                documents=sorted(set(documents)),
                complete=not missing,
                missing=missing,
            )
        )

    def approve(self, amount: Decimal, limit: BenefitLimit, today: date) -> None:
        if self.state.status is not ClaimStatus.DOCUMENTS_COMPLETE:
            missing = [d for d in self.state.required if d not in self.state.received]
            raise Conflict(
                f"cannot approve a claim that is {self.state.status}"
                + (f"; still missing: {', '.join(missing)}" if missing and self.state.status in OPEN else ""),
                code="invalid_transition",
            )
        if amount <= 0:
            raise InvalidInput("amount must be positive", field="amount")
        if limit.amount is not None and amount > limit.amount:
            raise Conflict(
                f"amount {amount} exceeds the limit of {limit.amount} CNY for this claim ({limit.reason})",
                code="amount_above_limit",
            )
        self._raise(ClaimApproved(claim_id=self.id, amount=amount, approved_on=today))

    def reject(self, reason: RejectionReason, note: str | None, today: date) -> None:
        self._require_open("reject")
        self._raise(ClaimRejected(claim_id=self.id, reason_code=reason, note=note, rejected_on=today))

    def pay(self, today: date) -> None:
        if self.state.status is not ClaimStatus.APPROVED:
            raise Conflict(
                f"only an approved claim can be paid; this one is {self.state.status}",
                code="invalid_transition",
            )
        assert self.state.member_id is not None and self.state.approved_amount is not None
        self._raise(
            ClaimPaid(
                claim_id=self.id,
                member_id=self.state.member_id,
                plan_code=self.state.plan_code,
                amount=self.state.approved_amount,
                paid_on=today,
            )
        )

    def _require_open(self, action: str) -> None:
        if self.state.status not in OPEN:
            raise Conflict(f"cannot {action} a claim that is {self.state.status}", code="invalid_transition")

    # state

    @applies(ClaimFiled)
    def _on_ClaimFiled(self, e: ClaimFiled) -> None:
        s = self.state
        s.member_id, s.plan_code, s.benefit = e.member_id, e.plan_code, e.benefit
        s.enrollment_id, s.report_id, s.incident_on = e.enrollment_id, e.report_id, e.incident_on
        s.required = tuple(e.required_documents)

    @applies(ClaimDocumentsReceived)
    def _on_ClaimDocumentsReceived(self, e: ClaimDocumentsReceived) -> None:
        self.state.received |= set(e.documents)
        self.state.status = ClaimStatus.DOCUMENTS_COMPLETE if e.complete else ClaimStatus.DOCUMENTS_PARTIAL

    @applies(ClaimApproved)
    def _on_ClaimApproved(self, e: ClaimApproved) -> None:
        self.state.status, self.state.approved_amount = ClaimStatus.APPROVED, e.amount

    @applies(ClaimRejected)
    def _on_ClaimRejected(self, e: ClaimRejected) -> None:
        self.state.status = ClaimStatus.REJECTED

    @applies(ClaimPaid)
    def _on_ClaimPaid(self, e: ClaimPaid) -> None:
        self.state.status = ClaimStatus.PAID


def illness_claim_check(plan: Plan, enrollment: EnrollmentFact | None, incident_on: date) -> BenefitLimit:
    """Staff-filed claims: the plan must take them and the enrolment must cover the date."""
    if plan.claim_kind is ClaimKind.INJURY:
        raise InvalidInput(
            f"{plan.code} claims are opened from injury reports, not filed by hand", field="plan_code"
        )
    if enrollment is None:
        raise InvalidInput("no such enrolment for this member", field="enrollment_id")
    if enrollment.plan_code != plan.code:
        raise InvalidInput(f"enrolment is in {enrollment.plan_code}, not {plan.code}", field="plan_code")
    if not enrollment.covers(incident_on):
        raise Conflict(
            f"enrolment covers {enrollment.starts_on}..{enrollment.ends_on}, not {incident_on}",
            code=RejectionReason.NOT_COVERED_ON_DATE,
        )
    return benefit_limit(plan, enrollment.shares, enrollment.starts_on, incident_on)


class ReportDecision(Aggregate[uuid.UUID]):
    """Records that an injury report opened no claim, and why: staff can tell the member."""

    stream_type = "InjuryReportDecision"
    #: A decision is recorded once; ``exists`` (the version) is all the state it needs.
    ignores = (NoCoverageFound,)

    def no_coverage(self, report_id: uuid.UUID, member_id: uuid.UUID, reasons: tuple[str, ...]) -> None:
        if self.exists:
            raise Conflict(f"report {report_id} is already decided")
        self._raise(NoCoverageFound(report_id=report_id, member_id=member_id, reasons=list(reasons)))


def illness_claim_id(enrollment_id: uuid.UUID, incident_on: date) -> uuid.UUID:
    """One staff-filed claim per enrolment and incident date: filing it twice is a conflict."""
    return uuid.uuid5(CLAIM_NAMESPACE, f"illness/{enrollment_id}/{incident_on.isoformat()}")
