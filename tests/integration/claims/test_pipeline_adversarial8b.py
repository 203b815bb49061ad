"""Review 8b: the claims pipeline changes on the real broker and database.

Targets ``handlers._catalogue``'s process-wide ``_LAST_CATALOGUE`` (plan bodies reused while
the plan versions are equal) and ``projections.report_facts`` (seen version, decided and
coverage in one statement, passed to ``decide``). Batches are composed exactly by calling the
coverage inbox's ``apply`` (the consumer's own transaction per partition batch); the rest goes
over Kafka through the running consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import date

import asyncpg  # type: ignore[import-untyped]
import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from services.claims import handlers
from services.claims.projections import report_facts
from shared.contracts import membership as m
from shared.contracts.plans import DEFAULT_PLANS
from shared.envelope import EventEnvelope
from shared.inbox import InboxConsumer, ReactionFailed
from shared.kafka import ensure_topics
from tests.infra import Infra
from tests.integration.claims.conftest import (
    ClaimsUnderTest,
    MembershipFeed,
    claims_settings,
    running_claims,
)
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration

AUG_2 = date(2016, 8, 2)
YEAR = (date(2016, 1, 1), date(2016, 12, 31))
CARD = "card_non_work_accident"
BOTH = [("ClaimFiled", "accident_injury"), ("ClaimFiled", CARD)]
PAID_ONLY = [("ClaimFiled", "accident_injury")]


def card_plan(*, active: bool, name: str = "card") -> m.PlanDefined:
    base = next(p for p in DEFAULT_PLANS if p.code == CARD)
    return m.PlanDefined.model_validate({**base.model_dump(mode="json"), "active": active, "name": name})


def plan_edit(feed: MembershipFeed, *, active: bool, name: str = "card") -> EventEnvelope:
    return feed.envelope("Plan", CARD, card_plan(active=active, name=name))  # type: ignore[arg-type]


def report(
    feed: MembershipFeed,
    member: uuid.UUID,
    *,
    plans: dict[str, int] | None = None,
    version: int | None = None,
) -> EventEnvelope:
    rid = uuid.uuid4()
    return feed.envelope(
        "InjuryReport",
        rid,
        m.InjuryReported(
            report_id=rid,
            member_id=member,
            occurred_on=AUG_2,
            work_related=False,
            reported_on=AUG_2,
            member_version=version if version is not None else feed.versions[str(member)],
            plan_versions=plans or {},
        ),
    )


def member_story(feed: MembershipFeed, member: uuid.UUID) -> list[EventEnvelope]:
    return [feed.joined(member), feed.card(member), feed.enrolled(member, *YEAR)]


async def decided(engine: AsyncEngine, report_id: str) -> list[tuple[str, str | None]]:
    """What the claims event store holds for a report: (event type, plan code), sorted."""
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text(
                "SELECT event_type, data->>'plan_code' FROM events "
                "WHERE data->>'report_id' = :r ORDER BY event_type, data->>'plan_code'"
            ),
            {"r": report_id},
        )
        return [(str(t), p) for t, p in rows]


def inbox(c: ClaimsUnderTest) -> InboxConsumer:
    [sub] = c.runtime.subscriptions
    return sub.consumer


async def test_a_plan_edited_twice_in_one_batch_each_report_sees_the_catalogue_of_its_place(
    claims: ClaimsUnderTest,
) -> None:
    """One transaction: report r0 (default card plan), PlanDefined v1 (card withdrawn), r1,
    PlanDefined v2 (card back), r2; then a new transaction with r3 (cache hit on v2) and one
    after a third edit (v3: withdrawn) with r4."""
    f, member = claims.feed, uuid.uuid4()
    story = member_story(f, member)
    r0 = report(f, member)
    v1 = plan_edit(f, active=False, name="withdrawn")
    r1 = report(f, member, plans={CARD: 1})
    v2 = plan_edit(f, active=True, name="back")
    r2 = report(f, member, plans={CARD: 2})
    await asyncio.wait_for(inbox(claims).apply([*story, r0, v1, r1, v2, r2]), 30)
    engine = claims.runtime.engine
    assert await decided(engine, r0.aggregate_id) == BOTH
    assert await decided(engine, r1.aggregate_id) == PAID_ONLY
    assert await decided(engine, r2.aggregate_id) == BOTH

    r3 = report(f, member, plans={CARD: 2})
    await asyncio.wait_for(inbox(claims).apply([r3]), 30)
    assert await decided(engine, r3.aggregate_id) == BOTH

    v3 = plan_edit(f, active=False, name="withdrawn again")
    r4 = report(f, member, plans={CARD: 3})
    await asyncio.wait_for(inbox(claims).apply([v3]), 30)
    await asyncio.wait_for(inbox(claims).apply([r4]), 30)
    assert await decided(engine, r4.aggregate_id) == PAID_ONLY


async def test_a_rolled_back_plan_edit_leaves_no_trace_in_the_process_cache(claims: ClaimsUnderTest) -> None:
    """PlanDefined v1 (card withdrawn) and then a reaction that fails: the batch rolls back but
    ``_LAST_CATALOGUE`` was filled from the uncommitted v1. The next transaction reads versions
    {card: 0}, unequal, so it reloads: a report still gets its card claim."""
    f, member = claims.feed, uuid.uuid4()
    await asyncio.wait_for(inbox(claims).apply(member_story(f, member)), 30)
    v1 = plan_edit(f, active=False)
    broken = report(f, member).model_copy(update={"data": {"report_id": "not a uuid"}})
    with pytest.raises(ReactionFailed):
        await asyncio.wait_for(inbox(claims).apply([v1, report(f, member, plans={CARD: 1}), broken]), 30)
    r = report(f, member)
    await asyncio.wait_for(inbox(claims).apply([r]), 30)
    assert await decided(claims.runtime.engine, r.aggregate_id) == BOTH


@contextlib.asynccontextmanager
async def second_database(infra: Infra) -> AsyncIterator[str]:
    name = f"t_{uuid.uuid4().hex[:16]}"
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base, _, _ = infra.admin_url.rpartition("/")
    try:
        yield f"{base}/{name}".replace("postgresql://", "postgresql+asyncpg://", 1)
    finally:
        admin = await asyncpg.connect(infra.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_two_claims_databases_in_one_process_same_plan_versions_different_bodies(
    claims: ClaimsUnderTest, infra: Infra, kafka: str
) -> None:
    """Database A withdraws the card plan at v1, database B re-publishes it (active) at v1:
    equal versions, different bodies. Reports alternate between the two; each follows its own."""
    suffix = uuid.uuid4().hex[:10]
    topics = f"test.{suffix}.membership", f"test.{suffix}.claims"
    await ensure_topics(kafka, list(topics))
    async with second_database(infra) as url_b:
        settings_b = claims_settings(url_b, kafka, *topics)
        async with running_claims(settings_b) as (runtime_b, _, _):
            [sub_b] = runtime_b.subscriptions
            fa, fb = claims.feed, MembershipFeed(kafka, topics[0])
            ma, mb = uuid.uuid4(), uuid.uuid4()
            await inbox(claims).apply([*member_story(fa, ma), plan_edit(fa, active=False)])
            await sub_b.consumer.apply([*member_story(fb, mb), plan_edit(fb, active=True, name="B")])
            for _ in range(3):
                ra, rb = report(fa, ma, plans={CARD: 1}), report(fb, mb, plans={CARD: 1})
                await asyncio.wait_for(inbox(claims).apply([ra]), 30)
                await asyncio.wait_for(sub_b.consumer.apply([rb]), 30)
                assert await decided(claims.runtime.engine, ra.aggregate_id) == PAID_ONLY
                assert await decided(runtime_b.engine, rb.aggregate_id) == BOTH
    assert len({k for k in handlers._LAST_CATALOGUE}) >= 2


async def test_a_replay_into_a_fresh_inbox_rewinds_plan_versions_and_reports_still_see_the_newest(
    claims: ClaimsUnderTest,
) -> None:
    """Plan edited v1 (withdrawn), v2 (back) over Kafka; a second runtime replays the topic into
    a fresh inbox on the same database, rewinding the plans row to v1 on the way (the upsert is
    unconditional) and forward again. A report afterwards needs v2 and must get the card claim:
    the process cache (shared by both runtimes, same database) must not keep v1's body."""
    f, member = claims.feed, uuid.uuid4()
    await f.send(*member_story(f, member), plan_edit(f, active=False), plan_edit(f, active=True, name="2"))
    first = report(f, member, plans={CARD: 2})
    await f.send(first)
    engine = claims.runtime.engine
    await eventually(lambda: decided(engine, first.aggregate_id), timeout=30)
    async with running_claims(claims.settings, group_suffix=".replay", inbox_name="coverage-replay"):
        marker = f.joined(uuid.uuid4())
        await f.send(marker)

        async def replayed() -> bool:
            async with engine.connect() as conn:
                n = await conn.scalar(
                    sa.text(
                        "SELECT count(*) FROM inbox WHERE consumer = 'coverage-replay' AND event_id = :e"
                    ),
                    {"e": marker.event_id},
                )
            return bool(n)

        await eventually(replayed, timeout=60)
    after = report(f, member, plans={CARD: 2})
    await f.send(after)
    assert await eventually(lambda: decided(engine, after.aggregate_id), timeout=30) == BOTH
    assert await decided(engine, first.aggregate_id) == BOTH, "the replay filed nothing twice"
    async with engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT version FROM plans WHERE code = :c"), {"c": CARD}) == 2


async def test_report_facts_unknown_member_seen_only_member_and_decided(claims: ClaimsUnderTest) -> None:
    f, member = claims.feed, uuid.uuid4()
    engine = claims.runtime.engine
    async with engine.connect() as conn:
        facts = await report_facts(conn, member, uuid.uuid4())
    assert (facts.seen_version, facts.decided, facts.coverage) == (0, False, None)
    joined = f.joined(member)
    r = report(f, member)
    await inbox(claims).apply([joined, r])  # joined, no card, no enrolment: "no coverage"
    assert [t for t, _ in await decided(engine, r.aggregate_id)] == ["NoCoverageFound"]
    async with engine.connect() as conn:
        facts = await report_facts(conn, member, uuid.UUID(r.aggregate_id))
    assert facts.decided and facts.seen_version == 1
    assert facts.coverage is not None and facts.coverage.cards == () and facts.coverage.enrollments == ()
    await inbox(claims).apply([f.card(member), f.enrolled(member, *YEAR)])
    async with engine.connect() as conn:
        facts = await report_facts(conn, member, uuid.uuid4())
    assert facts.seen_version == 3 and not facts.decided
    assert facts.coverage is not None and len(facts.coverage.enrollments) == 1
    assert len(facts.coverage.cards) == 1


async def test_a_report_before_its_member_is_parked_then_released_and_decided_exactly_once(
    claims: ClaimsUnderTest,
) -> None:
    """The report (made at member version 3) reaches claims before any of the member's events,
    and is redelivered under another event id and again after release; then a replay of the
    same report in the release's batch. ClaimFiled twice (paid and card), never NoCoverageFound."""
    f, member = claims.feed, uuid.uuid4()
    story = member_story(f, member)
    r = report(f, member, version=3)
    await f.send(r)
    engine = claims.runtime.engine

    async def parked() -> bool:
        async with engine.connect() as conn:
            n = await conn.scalar(
                sa.text("SELECT count(*) FROM pending_reports WHERE report_id = :r"), {"r": r.aggregate_id}
            )
        return bool(n)

    await eventually(parked, timeout=30)
    again = r.model_copy(update={"event_id": uuid.uuid4()})
    await f.send(story[0], again, story[1], story[2], again, r)
    assert await eventually(lambda: decided(engine, r.aggregate_id), timeout=30) == BOTH
    await asyncio.sleep(1.0)
    assert await decided(engine, r.aggregate_id) == BOTH


async def test_a_parked_report_released_in_the_batch_that_also_holds_a_plan_edit(
    claims: ClaimsUnderTest,
) -> None:
    """One batch: the report (needs member v3 and card v1) first, the member's story, then the
    plan edit (withdrawn). It is released by the PlanDefined (the member came first) and must be
    decided against v1: paid only. Another report parked on the member only, released by the
    member's last event *before* the edit in the same batch, is decided on the default plan."""
    f, member, other = claims.feed, uuid.uuid4(), uuid.uuid4()
    waits_for_plan = report(f, member, plans={CARD: 1}, version=3)
    waits_for_member = report(f, other, version=3)
    batch = [waits_for_plan, waits_for_member, *member_story(f, member), *member_story(f, other)]
    batch.append(plan_edit(f, active=False))
    await asyncio.wait_for(inbox(claims).apply(batch), 30)
    engine = claims.runtime.engine
    assert await decided(engine, waits_for_member.aggregate_id) == BOTH
    assert await decided(engine, waits_for_plan.aggregate_id) == PAID_ONLY


async def test_many_reports_over_kafka_across_a_plan_edit_decide_each_exactly_once(
    claims: ClaimsUnderTest,
) -> None:
    """60 reports sent in one burst with a plan edit in the middle (reports after it name v1):
    every report has exactly one decision; those naming v1 have no card claim."""
    f = claims.feed
    members = [uuid.uuid4() for _ in range(6)]
    out: list[EventEnvelope] = []
    for mem in members:
        out += member_story(f, mem)
    before = [report(f, members[i % 6]) for i in range(30)]
    edit = plan_edit(f, active=False)
    after = [report(f, members[i % 6], plans={CARD: 1}) for i in range(30)]
    await f.send(*out, *before, edit, *after)
    engine = claims.runtime.engine

    async def all_decided() -> bool:
        async with engine.connect() as conn:
            n = await conn.scalar(sa.text("SELECT count(*) FROM report_decisions"))
        return bool(n == 60)

    await eventually(all_decided, timeout=60)
    for r in after:
        assert await decided(engine, r.aggregate_id) == PAID_ONLY
    for r in before:
        # Decided before or after the edit (another partition may be behind): never twice.
        assert await decided(engine, r.aggregate_id) in (BOTH, PAID_ONLY)
