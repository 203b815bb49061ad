"""One example envelope per event type and schema version, built from the contract's own models.

They follow the seed story (a member of a Shiyuan Street grassroots union hurt on her way home,
with an accident enrolment and a Jing card: two claims). docs/EVENTS.md and the AsyncAPI documents
show them; tests validate each against its published JSON Schema, so they cannot drift.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from shared.contracts import activities as a
from shared.contracts import claims as c
from shared.contracts import mediation as md
from shared.contracts import membership as m
from shared.contracts.common import Benefit, Gender
from shared.contracts.counseling_examples import counseling_examples
from shared.envelope import EventEnvelope
from shared.events import DomainEvent

_NS = uuid.UUID("6f0b8a4e-2d1c-4f7e-9a55-000000000012")


def _id(name: str) -> uuid.UUID:
    return uuid.uuid5(_NS, name)


MUNICIPAL, DISTRICT, STREET, UNION = _id("municipal"), _id("district"), _id("street"), _id("union")
OTHER_UNION, MEMBER, ENROLLMENT, REPORT = _id("union-2"), _id("member"), _id("enrollment"), _id("report")
PAID_CLAIM, CARD_CLAIM = _id("claim-paid"), _id("claim-card")

#: (aggregate type, aggregate id, aggregate version, producer, payload)
_EXAMPLES: list[tuple[str, str, int, str, DomainEvent]] = [
    (
        "Union",
        str(STREET),
        1,
        "membership",
        m.UnionRegistered(
            union_id=STREET, name="石园街道总工会", level=m.UnionLevel.STREET, parent_union_id=DISTRICT
        ),
    ),
    (
        "Union",
        str(STREET),
        1,
        "membership",
        m.UnionRegisteredV1(
            union_id=STREET, name="石园街道总工会", level=m.UnionLevel.STREET, parent_id=DISTRICT
        ),
    ),
    (
        "Member",
        str(MEMBER),
        1,
        "membership",
        m.MemberJoined(
            member_id=MEMBER,
            union_id=UNION,
            full_name="王秀兰",
            gender=Gender.FEMALE,
            birth_date=date(1978, 3, 14),
            joined_on=date(2015, 6, 1),
            employer="石园社区服务中心",
        ),
    ),
    (
        "Member",
        str(MEMBER),
        2,
        "membership",
        m.CardIssued(member_id=MEMBER, card_last4="4821", issued_on=date(2015, 7, 1)),
    ),
    (
        "Member",
        str(MEMBER),
        3,
        "membership",
        m.PlanEnrolled(
            enrollment_id=ENROLLMENT,
            member_id=MEMBER,
            plan_code="accident_injury",
            shares=2,
            price_level=Decimal(26),
            coverage_starts_on=date(2016, 1, 1),
            coverage_ends_on=date(2016, 12, 31),
        ),
    ),
    (
        "Member",
        str(MEMBER),
        4,
        "membership",
        m.MemberTransferred(
            member_id=MEMBER, from_union_id=UNION, to_union_id=OTHER_UNION, transferred_on=date(2016, 9, 1)
        ),
    ),
    (
        "Member",
        str(MEMBER),
        5,
        "membership",
        m.CardCancelled(
            member_id=MEMBER, card_last4="4821", cancelled_on=date(2016, 10, 8), reason="replaced"
        ),
    ),
    (
        "Member",
        str(MEMBER),
        6,
        "membership",
        m.EnrollmentCancelled(
            enrollment_id=ENROLLMENT,
            member_id=MEMBER,
            plan_code="accident_injury",
            cancelled_on=date(2016, 11, 30),
            reason="cancelled",
        ),
    ),
    (
        "Member",
        str(MEMBER),
        7,
        "membership",
        m.MemberLeft(member_id=MEMBER, left_on=date(2038, 3, 31), reason=m.LeaveReason.RETIRED),
    ),
    (
        "Member",
        str(MEMBER),
        8,
        "membership",
        m.MemberPhoneChanged(member_id=MEMBER, changed_on=date(2038, 4, 2)),
    ),
    (
        "InjuryReport",
        str(REPORT),
        1,
        "membership",
        m.InjuryReported(
            report_id=REPORT,
            member_id=MEMBER,
            occurred_on=date(2016, 8, 2),
            work_related=False,
            reported_on=date(2016, 8, 4),
            member_version=3,
            traffic_accident=True,
        ),
    ),
    (
        "Plan",
        "card_non_work_accident",
        1,
        "membership",
        m.PlanDefined(
            code="card_non_work_accident",
            name="京卡非工伤意外伤害综合互助保障",
            benefit="card",
            claim_kind="injury",
            price_levels=[],
            term_months=12,
            min_age=None,
            max_age=None,
            genders=None,
            waiting_days=0,
            reduced_benefit_until_days=0,
            reduced_benefit_amount=None,
            benefit_per_share=None,
            max_benefit=Decimal(20000),
            active=True,
        ),
    ),
    (
        "Claim",
        str(CARD_CLAIM),
        1,
        "claims",
        c.ClaimFiled(
            claim_id=CARD_CLAIM,
            member_id=MEMBER,
            report_id=REPORT,
            plan_code="card_non_work_accident",
            benefit=Benefit.CARD,
            enrollment_id=None,
            required_documents=[
                "union_incident_certificate",
                "diagnosis_and_hospital_records",
                "id_copy",
                "card_copy",
                "traffic_accident_certificate",
            ],
            incident_on=date(2016, 8, 2),
            filed_on=date(2016, 8, 4),
        ),
    ),
    (
        "InjuryReportDecision",
        str(_id("report-2")),
        1,
        "claims",
        c.NoCoverageFound(
            report_id=_id("report-2"),
            member_id=_id("member-2"),
            reasons=[
                "no_enrollment: no accident_injury enrolment",
                "work_related: card_non_work_accident covers non-work accidents only",
            ],
        ),
    ),
    (
        "Claim",
        str(PAID_CLAIM),
        2,
        "claims",
        c.ClaimDocumentsReceived(
            claim_id=PAID_CLAIM,
            documents=["union_incident_certificate", "diagnosis_and_hospital_records", "id_copy"],
            complete=False,
            missing=["card_copy", "traffic_accident_certificate"],
        ),
    ),
    (
        "Claim",
        str(PAID_CLAIM),
        4,
        "claims",
        c.ClaimApproved(claim_id=PAID_CLAIM, amount=Decimal("3200.00"), approved_on=date(2016, 9, 12)),
    ),
    (
        "Claim",
        str(_id("claim-3")),
        3,
        "claims",
        c.ClaimRejected(claim_id=_id("claim-3"), reason_code="waiting_period", rejected_on=date(2016, 9, 12)),
    ),
    (
        "Claim",
        str(PAID_CLAIM),
        5,
        "claims",
        c.ClaimPaid(
            claim_id=PAID_CLAIM,
            member_id=MEMBER,
            plan_code="accident_injury",
            amount=Decimal("3200.00"),
            paid_on=date(2016, 9, 20),
        ),
    ),
]


# --- mediation: a member's unpaid wages, received at the Shiyuan station, escalated, agreed ---------
CASE, SESSION, ROOM = _id("case"), _id("session"), _id("room")
_MEDIATION_EXAMPLES: list[tuple[str, str, int, str, DomainEvent]] = [
    (
        "Case",
        str(CASE),
        1,
        "mediation",
        md.CaseReceived(
            case_id=CASE,
            case_number="SY-2026-0042",
            station_union_id=STREET,
            party=md.Party.MEMBER,
            member_id=MEMBER,
            category=md.Category.WAGES,
            amount_claimed=Decimal("8600.00"),
            learned_on=date(2026, 8, 31),
            received_on=date(2026, 9, 16),
            mediation_deadline=date(2026, 10, 8),
            arbitration_limit=date(2027, 8, 31),
        ),
    ),
    (
        "Room",
        str(ROOM),
        1,
        "mediation",
        md.RoomBooked(
            room_id=ROOM,
            station_union_id=STREET,
            session_id=SESSION,
            case_id=CASE,
            starts_at=datetime(2026, 9, 18, 1, 0, tzinfo=UTC),
            ends_at=datetime(2026, 9, 18, 3, 0, tzinfo=UTC),
        ),
    ),
    (
        "Room",
        str(ROOM),
        2,
        "mediation",
        # Of another case, withdrawn before its session: the time is free again.
        md.RoomReleased(
            room_id=ROOM,
            station_union_id=STREET,
            session_id=_id("session-2"),
            case_id=_id("case-2"),
            cause=md.ReleaseCause.CASE_WITHDRAWN,
        ),
    ),
    (
        "Case",
        str(CASE),
        2,
        "mediation",
        md.MediationSessionScheduled(
            case_id=CASE,
            session_id=SESSION,
            room_id=ROOM,
            starts_at=datetime(2026, 9, 18, 1, 0, tzinfo=UTC),
            ends_at=datetime(2026, 9, 18, 3, 0, tzinfo=UTC),
            mediator="mediator-1",
            parties_present=["worker", "employer", "union_representative"],
        ),
    ),
    (
        "Case",
        str(CASE),
        3,
        "mediation",
        md.MinutesRecorded(case_id=CASE, session_id=SESSION, recorded_by="mediator-1"),
    ),
    ("Case", str(CASE), 4, "mediation", md.EmployerRefused(case_id=CASE, refused_on=date(2026, 9, 18))),
    (
        "Case",
        str(CASE),
        5,
        "mediation",
        md.CaseEscalated(
            case_id=CASE,
            from_tier=md.Tier.STREET,
            from_union_id=STREET,
            to_tier=md.Tier.DISTRICT,
            to_union_id=DISTRICT,
            escalated_on=date(2026, 9, 21),
            mediation_deadline=date(2026, 10, 8),
        ),
    ),
    (
        "Case",
        str(CASE),
        6,
        "mediation",
        md.MediationDeadlinePassed(
            case_id=CASE,
            mediation_deadline=date(2026, 10, 8),
            detected_on=date(2026, 10, 9),
            tier=md.Tier.DISTRICT,
            handling_union_id=DISTRICT,
        ),
    ),
    (
        "Case",
        str(CASE),
        7,
        "mediation",
        md.AgreementReached(
            case_id=CASE,
            amount=Decimal("7000.00"),
            due_on=date(2026, 10, 31),
            agreed_on=date(2026, 10, 12),
            tier=md.Tier.DISTRICT,
            handling_union_id=DISTRICT,
        ),
    ),
    (
        "Case",
        str(CASE),
        8,
        "mediation",
        md.AgreementFulfilled(case_id=CASE, amount_paid=Decimal("7000.00"), fulfilled_on=date(2026, 10, 30)),
    ),
    (
        "Case",
        str(_id("case-2")),
        2,
        "mediation",
        md.CaseWithdrawn(case_id=_id("case-2"), withdrawn_on=date(2026, 9, 20)),
    ),
    (
        "Case",
        str(_id("case-3")),
        3,
        "mediation",
        md.CaseReferredToArbitration(
            case_id=_id("case-3"),
            body="顺义区劳动人事争议仲裁委员会",
            referred_on=date(2026, 9, 25),
            tier=md.Tier.STREET,
            handling_union_id=STREET,
        ),
    ),
    (
        "Case",
        str(_id("case-4")),
        2,
        "mediation",
        md.ArbitrationLimitNear(
            case_id=_id("case-4"),
            arbitration_limit=date(2026, 10, 8),
            detected_on=date(2026, 9, 8),
            days_left=30,
        ),
    ),
]
_EXAMPLES.extend(_MEDIATION_EXAMPLES)

_EXAMPLES += counseling_examples(_id)
# The Mother's Day parent-child activity (seed story, section 3): full, a waitlist, a promotion.
ACTIVITY, SESSION = _id("activity-mothers-day"), _id("session-games")
REGISTRATION, WAITING, INTEREST = _id("registration-1"), _id("registration-2"), _id("interest-1")
_MAY_10 = datetime(2026, 5, 10, 1, 0, tzinfo=UTC)  # 09:00 in Beijing
_APRIL_20 = datetime(2026, 4, 20, 2, 0, tzinfo=UTC)
_EXAMPLES += [
    (
        "Activity",
        str(ACTIVITY),
        1,
        "activities",
        a.ActivityScheduled(
            activity_id=ACTIVITY,
            kind=a.ActivityKind.PARENT_CHILD,
            title="母亲节亲子活动 纽扣画与盆栽",
            starts_at=_MAY_10,
            ends_at=datetime(2026, 5, 10, 4, 0, tzinfo=UTC),
            venue="顺义花卉中心",
            capacity=20,
            audience=a.Audience.MEMBER_FAMILIES,
            child_age_min=3,
            child_age_max=12,
            registration_closes_at=datetime(2026, 5, 8, 10, 0, tzinfo=UTC),
            union_id=UNION,
            partner=a.Partner(name="首都职工志愿服务队", kind=a.PartnerKind.VOLUNTEER_TEAM),
        ),
    ),
    (
        "Activity",
        str(ACTIVITY),
        2,
        "activities",
        a.InterestedMembersNotified(
            activity_id=ACTIVITY,
            kind=a.ActivityKind.PARENT_CHILD,
            interest_ids=[INTEREST],
            member_ids=[MEMBER],
        ),
    ),
    (
        "Activity",
        str(ACTIVITY),
        3,
        "activities",
        a.ActivityChanged(
            activity_id=ACTIVITY,
            title="母亲节亲子活动 纽扣画与盆栽",
            starts_at=_MAY_10,
            ends_at=datetime(2026, 5, 10, 4, 0, tzinfo=UTC),
            venue="顺义花卉中心 2号厅",
            capacity=20,
            registration_closes_at=datetime(2026, 5, 8, 10, 0, tzinfo=UTC),
            changed=["venue"],
        ),
    ),
    (
        "Activity",
        str(ACTIVITY),
        4,
        "activities",
        a.RegistrationConfirmed(
            activity_id=ACTIVITY,
            registration_id=REGISTRATION,
            member_id=MEMBER,
            member_union_id=UNION,
            children_ages=[6],
            registered_at=_APRIL_20,
        ),
    ),
    (
        "Activity",
        str(ACTIVITY),
        24,
        "activities",
        a.RegistrationWaitlisted(
            activity_id=ACTIVITY,
            registration_id=WAITING,
            member_id=_id("member-2"),
            member_union_id=OTHER_UNION,
            children_ages=[4, 9],
            position=1,
            registered_at=_APRIL_20,
        ),
    ),
    (
        "Activity",
        str(ACTIVITY),
        25,
        "activities",
        a.RegistrationCancelled(
            activity_id=ACTIVITY,
            registration_id=_id("registration-3"),
            member_id=_id("member-3"),
            previous_status=a.RegistrationStatus.CONFIRMED,
            reason=a.CancellationReason.REQUESTED,
            cancelled_at=datetime(2026, 5, 2, 3, 0, tzinfo=UTC),
        ),
    ),
    (
        "Activity",
        str(ACTIVITY),
        26,
        "activities",
        a.WaitlistPromoted(
            activity_id=ACTIVITY,
            registration_id=WAITING,
            member_id=_id("member-2"),
            freed_by=_id("registration-3"),
            promoted_at=datetime(2026, 5, 2, 3, 0, tzinfo=UTC),
        ),
    ),
    (
        "Activity",
        str(ACTIVITY),
        27,
        "activities",
        a.RegistrationWindowClosed(activity_id=ACTIVITY, closed_at=datetime(2026, 5, 7, 1, 0, tzinfo=UTC)),
    ),
    (
        "Activity",
        str(ACTIVITY),
        28,
        "activities",
        a.VolunteerAssigned(
            activity_id=ACTIVITY, member_id=_id("member-4"), role="volunteer", assigned_on=date(2026, 5, 7)
        ),
    ),
    (
        "Activity",
        str(ACTIVITY),
        29,
        "activities",
        a.VolunteerReleased(activity_id=ACTIVITY, member_id=_id("member-4"), released_on=date(2026, 5, 8)),
    ),
    (
        "Activity",
        str(ACTIVITY),
        30,
        "activities",
        a.AttendanceRecorded(
            activity_id=ACTIVITY,
            registration_id=REGISTRATION,
            member_id=MEMBER,
            checked_in_at=datetime(2026, 5, 10, 0, 50, tzinfo=UTC),
        ),
    ),
    (
        "Activity",
        str(ACTIVITY),
        31,
        "activities",
        a.FeedbackSubmitted(
            activity_id=ACTIVITY,
            registration_id=REGISTRATION,
            member_id=MEMBER,
            rating=5,
            comment="孩子把亲手种的花送给了妈妈",
            submitted_at=datetime(2026, 5, 10, 6, 0, tzinfo=UTC),
        ),
    ),
    (
        "Activity",
        str(_id("activity-2")),
        3,
        "activities",
        a.ActivityCancelled(
            activity_id=_id("activity-2"),
            reason="storm warning",
            cancelled_on=date(2026, 6, 1),
            registration_ids=[_id("registration-4")],
        ),
    ),
    (
        "Interest",
        str(INTEREST),
        1,
        "activities",
        a.InterestRegistered(
            interest_id=INTEREST,
            member_id=MEMBER,
            kind=a.ActivityKind.PARENT_CHILD,
            registered_on=date(2025, 5, 12),
        ),
    ),
]


_FROM_REPORT = {"ClaimFiled", "NoCoverageFound"}


# Appended last, so that every earlier example keeps its occurred_at (its index in this list).
_EXAMPLES += [
    (
        "Room",
        str(ROOM),
        2,
        "mediation",
        # The same release as written before v2 (no cause but the one constant).
        md.RoomReleasedV1(
            room_id=ROOM, station_union_id=STREET, session_id=_id("session-2"), case_id=_id("case-2")
        ),
    ),
    (
        "Case",
        str(_id("case-5")),
        3,
        "mediation",
        # A third case's first session called off; the room's RoomReleased says session_cancelled.
        md.SessionCancelled(
            case_id=_id("case-5"),
            session_id=_id("session-3"),
            room_id=ROOM,
            cancelled_on=date(2026, 9, 17),
        ),
    ),
]


def examples() -> dict[tuple[str, int], dict[str, Any]]:
    """(event type, schema version) -> the example envelope, as JSON would carry it."""
    out: dict[tuple[str, int], dict[str, Any]] = {}
    for i, (agg_type, agg_id, agg_version, producer, event) in enumerate(_EXAMPLES):
        envelope = EventEnvelope(
            event_id=_id(f"event-{event.event_type}-{event.schema_version}"),
            event_type=event.event_type,
            schema_version=event.schema_version,
            aggregate_type=agg_type,
            aggregate_id=agg_id,
            aggregate_version=agg_version,
            occurred_at=datetime(2016, 8, 4, 1, 30, i, tzinfo=UTC),
            producer=producer,
            correlation_id=_id(f"correlation-{agg_id}"),
            # Claims opened from a report are caused by its InjuryReported; staff commands by nothing.
            causation_id=_id("event-InjuryReported-1") if event.event_type in _FROM_REPORT else None,
            data=event.model_dump(mode="json"),
        )
        out[(event.event_type, event.schema_version)] = envelope.model_dump(mode="json")
    return out


def kafka_headers(envelope: dict[str, Any]) -> dict[str, str]:
    return {
        "event_type": envelope["event_type"],
        "event_id": envelope["event_id"],
        "schema_version": str(envelope["schema_version"]),
        "correlation_id": envelope["correlation_id"],
    }
