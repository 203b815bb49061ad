"""Adversarial review of f33dbeb: a filed claim's row and its report's decision in one CTE.

The real coverage consumer (``InboxConsumer.apply``, no broker) on a migrated claims database:
a report with two claims, a report with none, and a staff-filed illness claim (no report).
All of these pass on the reviewed code and on its parent (f33dbeb^): the rows are the same."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from services.claims import handlers
from services.claims.app import MIGRATIONS, ClaimsSettings, build_runtime
from services.claims.projections import apply_own, own_projection
from services.claims.schemas import IllnessClaimIn
from shared.clock import fixed
from shared.contracts import claims as c
from shared.contracts import membership as m
from shared.contracts.common import Benefit, Gender
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.eventstore import EventStore
from shared.inbox import Outcome
from shared.migrations import upgrade_to_head
from shared.projections import rebuild
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork
from tests.integration.claims.conftest import TODAY

pytestmark = pytest.mark.integration

YEAR = (date(2016, 1, 1), date(2016, 12, 31))
AUG_2 = date(2016, 8, 2)


class Feed:
    def __init__(self) -> None:
        self.store = EventStore("membership", m.registry)
        self.versions: dict[str, int] = {}

    def __call__(self, stream_type: str, stream_id: object, event: DomainEvent) -> EventEnvelope:
        sid = str(stream_id)
        [env] = self.store.envelopes(
            stream_type, sid, self.versions.get(sid, 0), [event], correlation_id=uuid.uuid4()
        )
        self.versions[sid] = env.aggregate_version
        return env

    def joined(self, member: uuid.UUID) -> EventEnvelope:
        return self(
            "Member",
            member,
            m.MemberJoined(
                member_id=member,
                union_id=uuid.uuid4(),
                full_name="Test Member",
                gender=Gender.MALE,
                birth_date=date(1980, 3, 4),
                joined_on=date(2012, 5, 1),
            ),
        )

    def report(self, member: uuid.UUID) -> EventEnvelope:
        rid = uuid.uuid4()
        return self(
            "InjuryReport",
            rid,
            m.InjuryReported(
                report_id=rid,
                member_id=member,
                occurred_on=AUG_2,
                work_related=False,
                reported_on=AUG_2,
                member_version=self.versions[str(member)],
            ),
        )


async def dump(runtime: ServiceRuntime, table: str, key: str) -> list[dict[str, Any]]:
    async with runtime.engine.connect() as conn:
        result = await conn.execute(sa.text(f"SELECT * FROM {table} ORDER BY {key}"))
        return [dict(r._mapping) for r in result]


async def scalar(runtime: ServiceRuntime, sql: str) -> Any:
    async with runtime.engine.connect() as conn:
        return await conn.scalar(sa.text(sql))


@pytest.fixture
async def claims_db(database_url: str) -> Any:
    await upgrade_to_head(MIGRATIONS, database_url)
    settings = ClaimsSettings(CLAIMS_DATABASE_URL=database_url)
    runtime = build_runtime(settings, clock=fixed(TODAY))
    try:
        yield runtime
    finally:
        await runtime.engine.dispose()


async def _story(runtime: ServiceRuntime) -> dict[str, Any]:
    """Member A (card, accident and critical illness enrolments) reports an injury: two claims.
    Member B (no card, no enrolment) reports one: no coverage. Staff file an illness claim for A."""
    [sub] = runtime.subscriptions
    feed, a, b = Feed(), uuid.uuid4(), uuid.uuid4()
    illness_enrolment = uuid.uuid4()
    batch = [
        feed.joined(a),
        feed("Member", a, m.CardIssued(member_id=a, card_last4="4321", issued_on=date(2015, 3, 1))),
        feed(
            "Member",
            a,
            m.PlanEnrolled(
                enrollment_id=uuid.uuid4(),
                member_id=a,
                plan_code="accident_injury",
                shares=1,
                coverage_starts_on=YEAR[0],
                coverage_ends_on=YEAR[1],
            ),
        ),
        feed(
            "Member",
            a,
            m.PlanEnrolled(
                enrollment_id=illness_enrolment,
                member_id=a,
                plan_code="critical_illness",
                shares=1,
                coverage_starts_on=YEAR[0],
                coverage_ends_on=YEAR[1],
            ),
        ),
        feed.joined(b),
    ]
    covered, uncovered = feed.report(a), feed.report(b)
    batch += [covered, uncovered]
    result = await sub.consumer.apply(batch)
    assert result.outcomes == [Outcome.PROCESSED] * len(batch) and result.dead_letters == []

    async with UnitOfWork(runtime.engine, runtime.store, projections=runtime.projections) as uow:
        illness = await handlers.file_illness_claim(
            uow,
            IllnessClaimIn(
                member_id=a, plan_code="critical_illness", enrollment_id=illness_enrolment, incident_on=AUG_2
            ),
            fixed(TODAY),
        )
        await uow.commit()
    return {"batch": batch, "covered": covered, "uncovered": uncovered, "illness": illness, "a": a, "b": b}


async def test_one_decision_per_report_none_for_a_staff_filed_claim_and_a_rebuild_gives_the_same_rows(
    claims_db: ServiceRuntime,
) -> None:
    runtime = claims_db
    story = await _story(runtime)
    claims = await dump(runtime, "claims", "claim_id")
    decisions = await dump(runtime, "report_decisions", "report_id")

    by_report: dict[Any, list[str]] = {}
    for row in claims:
        by_report.setdefault(row["report_id"], []).append(row["plan_code"])
    covered_id = uuid.UUID(story["covered"].aggregate_id)
    assert sorted(by_report[covered_id]) == ["accident_injury", "card_non_work_accident"]
    assert by_report[None] == ["critical_illness"], "the staff-filed claim has no report"
    assert uuid.UUID(story["uncovered"].aggregate_id) not in by_report

    assert {d["report_id"] for d in decisions} == {covered_id, uuid.UUID(story["uncovered"].aggregate_id)}
    [claimed] = [d for d in decisions if d["report_id"] == covered_id]
    assert claimed["reasons"] == [] and claimed["member_id"] == story["a"]
    filed_at = await scalar(
        runtime,
        f"SELECT min(occurred_at) FROM events WHERE event_type = 'ClaimFiled' "
        f"AND data->>'report_id' = '{covered_id}'",
    )
    assert claimed["decided_at"] == filed_at
    [none] = [d for d in decisions if d["report_id"] != covered_id]
    assert none["reasons"] and none["member_id"] == story["b"]
    assert await scalar(runtime, "SELECT count(*) FROM report_decisions WHERE report_id IS NULL") == 0

    replayed = await rebuild(runtime.engine, runtime.store, own_projection)
    assert replayed == await scalar(runtime, "SELECT count(*) FROM events")
    assert await dump(runtime, "claims", "claim_id") == claims
    assert await dump(runtime, "report_decisions", "report_id") == decisions


async def test_redelivery_and_a_replay_into_a_fresh_inbox_decide_nothing_twice(
    claims_db: ServiceRuntime,
) -> None:
    runtime = claims_db
    story = await _story(runtime)
    [sub] = runtime.subscriptions
    events = await scalar(runtime, "SELECT count(*) FROM events")
    claims = await dump(runtime, "claims", "claim_id")
    decisions = await dump(runtime, "report_decisions", "report_id")

    again = await sub.consumer.apply(story["batch"])
    assert set(again.outcomes) == {Outcome.DUPLICATE}
    sub.consumer.name = "coverage-fresh-inbox"  # as after losing the inbox: every event is new again
    reports = [story["covered"], story["uncovered"]]
    assert (await sub.consumer.apply(reports)).outcomes == [Outcome.PROCESSED] * 2

    assert await scalar(runtime, "SELECT count(*) FROM events") == events, "the decided check held"
    assert await dump(runtime, "claims", "claim_id") == claims
    assert await dump(runtime, "report_decisions", "report_id") == decisions


def _filed(
    report_id: uuid.UUID | None, member: uuid.UUID, claim_id: uuid.UUID | None = None
) -> EventEnvelope:
    event = c.ClaimFiled(
        claim_id=claim_id or uuid.uuid4(),
        member_id=member,
        report_id=report_id,
        plan_code="accident_injury",
        benefit=Benefit.PAID,
        enrollment_id=None,
        required_documents=["a", "b"],
        incident_on=AUG_2,
        filed_on=TODAY,
    )
    [env] = EventStore("claims", c.registry).envelopes(
        "Claim", str(event.claim_id), 0, [event], correlation_id=uuid.uuid4()
    )
    return env


async def test_the_statement_itself_null_report_first_on_a_fresh_connection_and_first_writer_wins(
    claims_db: ServiceRuntime,
) -> None:
    """The CTE on its own: a NULL report as the first execution of the prepared statement; the
    same ClaimFiled projected twice; a ClaimFiled for a report already decided "no coverage"."""
    runtime, member, report = claims_db, uuid.uuid4(), uuid.uuid4()
    no_report = _filed(None, member)
    decided_first = datetime(2016, 8, 9, 8, 0, tzinfo=UTC)
    async with runtime.engine.begin() as conn:
        await apply_own(conn, no_report)
        await apply_own(conn, no_report)  # a no-op, as before the change
        await conn.execute(
            sa.text(
                "INSERT INTO report_decisions (report_id, member_id, reasons, decided_at) "
                "VALUES (:r, :m, CAST(:reasons AS jsonb), :at)"
            ),
            {"r": report, "m": member, "reasons": json.dumps(["no_card"]), "at": decided_first},
        )
        await apply_own(conn, _filed(report, member))
    assert await scalar(runtime, "SELECT count(*) FROM claims") == 2
    assert await dump(runtime, "report_decisions", "report_id") == [
        {"report_id": report, "member_id": member, "reasons": ["no_card"], "decided_at": decided_first}
    ]
