"""Adversarial review of eeb6456: ``InboxConsumer(follows=...)`` passes other streams by.

Passing tests confirm what held (index mapping under parked releases, dead letters and
transient failures; the real Kafka loop over a mixed partition with a garbage record and a
poison member event; each service's own consumer and read model; an upgraded database).
The three defects it found are fixed or ruled on: a bare string for ``follows`` is refused; an
upgrade drops parked events of unfollowed streams (a migration per service); widening
``follows`` needs the consumer replayed from the start (documented, and shown here).

Real PostgreSQL and Kafka on 127.0.0.1; every test has its own database and topic."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.consumer import KafkaConsumerLoop
from shared.contracts import membership as m
from shared.contracts.common import Gender
from shared.contracts.plans import DEFAULT_PLANS
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer, Outcome, Reaction, ReactionFailed, is_transient
from shared.kafka import dlq_topic, ensure_topics
from shared.metrics import consumer_lag
from shared.migrations import forget_parked_of_unfollowed_streams, upgrade_to_head
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork
from tests.integration.core.test_consumer import LOG_DDL, envelope, publish
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(core_engine: AsyncEngine) -> AsyncEngine:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text(LOG_DDL))
    return core_engine


def of(aggregate_type: str, stream: str, version: int, n: int) -> EventEnvelope:
    return envelope(stream, version, n).model_copy(update={"aggregate_type": aggregate_type})


async def log_row(uow: UnitOfWork, env: EventEnvelope) -> None:
    await uow.conn.execute(
        sa.text("INSERT INTO applied (stream_id, n) VALUES (:s, :n)"),
        {"s": env.aggregate_id, "n": env.data["n"]},
    )


def scripted(failures: dict[int, list[type[Exception]]]) -> Reaction:
    """Raises, for an event with data n, the next exception listed for n (then applies it)."""

    async def react(uow: UnitOfWork, env: EventEnvelope) -> None:
        pending = failures.get(env.data["n"])
        if pending:
            raise pending.pop(0)(f"scripted failure of n={env.data['n']}")
        await log_row(uow, env)

    return react


def inbox_of(
    engine: AsyncEngine, reaction: Reaction, *, name: str = "members", follows: Any = ("Member",)
) -> InboxConsumer:
    return InboxConsumer(name, engine, EventStore("downstream", {}), {"Counted": reaction}, follows=follows)  # type: ignore[arg-type]


async def rows(engine: AsyncEngine, sql: str) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        return [tuple(r) for r in (await conn.execute(sa.text(sql))).all()]


async def applied(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    return await rows(engine, "SELECT stream_id, n FROM applied ORDER BY seq")


# --- the inbox: index mapping and parked releases ----------------------------------------------


async def test_a_parked_event_that_fails_when_released_is_dead_lettered_from_a_mixed_batch(
    engine: AsyncEngine,
) -> None:
    inbox = inbox_of(engine, scripted({13: [ValueError]}))
    early = of("Member", "m", 2, 13)
    assert (await inbox.apply([of("Plan", "p", 4, 0), early])).outcomes == [Outcome.SKIPPED, Outcome.PARKED]

    batch = [of("InjuryReport", "r1", 1, 0), of("Plan", "p", 5, 0), of("Member", "m", 1, 1)]
    result = await inbox.apply(batch)
    assert result.outcomes == [Outcome.SKIPPED, Outcome.SKIPPED, Outcome.PROCESSED]
    assert [(e.event_id, type(x)) for e, x in result.dead_letters] == [(early.event_id, ValueError)]
    assert await applied(engine) == [("m", 1)]
    assert await rows(engine, "SELECT stream_id, version FROM consumer_streams") == [("m", 1)]
    assert await rows(engine, "SELECT * FROM consumer_parked") == []
    inbox_ids = {r[0] for r in await rows(engine, "SELECT event_id FROM inbox")}
    assert inbox_ids == {batch[2].event_id}, "the dead letter left the inbox; no unfollowed id entered"

    # The dead letter replayed (the cause fixed): applied, as for any consumer.
    again = await inbox.apply([of("Plan", "p", 6, 0), early])
    assert again.outcomes == [Outcome.SKIPPED, Outcome.PROCESSED]
    assert await applied(engine) == [("m", 1), ("m", 13)]


async def test_a_transient_failure_of_a_release_names_the_releasing_events_place(engine: AsyncEngine) -> None:
    """m2 parked; m1 releases it, and m2's reaction meets a transient error: the whole batch is
    rolled back and the index is m1's place among all the records (it is what the loop retries)."""
    inbox = inbox_of(engine, scripted({22: [ConnectionResetError]}))
    await inbox.apply([of("Member", "m", 2, 22)])
    batch = [of("InjuryReport", "r1", 1, 0), of("Union", "u", 1, 0), of("Member", "m", 1, 1)]
    with pytest.raises(ReactionFailed) as failed:
        await inbox.apply(batch)
    assert failed.value.index == 2 and is_transient(failed.value)
    assert await applied(engine) == []
    assert (await inbox.apply(batch)).outcomes == [Outcome.SKIPPED, Outcome.SKIPPED, Outcome.PROCESSED]
    assert await applied(engine) == [("m", 1), ("m", 22)]


async def test_failure_index_points_at_the_failing_event_wherever_the_skipped_ones_are(
    engine: AsyncEngine,
) -> None:
    kinds = ["InjuryReport", "Member", "Plan", "Plan", "Member", "InjuryReport", "Member"]
    for poisoned in (1, 4, 6):
        batch = []
        version = 0
        for i, kind in enumerate(kinds):
            if kind == "Member":
                version += 1
                batch.append(of("Member", f"s{poisoned}", version, 13 if i == poisoned else i))
            else:
                batch.append(of(kind, f"x{i}", 1, 13))  # poison if it were ever reacted to
        with pytest.raises(ReactionFailed) as failed:
            await inbox_of(engine, scripted({13: [ValueError] * 10})).apply(batch)
        assert failed.value.index == poisoned
        assert batch[failed.value.index].aggregate_type == "Member"


# --- the real consumer loop ----------------------------------------------------------------------


@contextlib.asynccontextmanager
async def looping(
    inbox: InboxConsumer, kafka: str, topic: str, group: str
) -> AsyncIterator[KafkaConsumerLoop]:
    loop = KafkaConsumerLoop(inbox, kafka, topic, group, max_attempts=2, retry_backoff=0.01, max_backoff=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        yield loop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


def counted(name: str, outcome: str) -> float:
    return REGISTRY.get_sample_value("consumer_messages_total", {"consumer": name, "outcome": outcome}) or 0.0


async def test_the_kafka_loop_over_a_mixed_partition_dead_letters_the_right_record_and_commits_it_all(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """offsets: 0 R1, 1 m1, 2 garbage, 3 R2, 4 m2 (fails for good), 5 R3, 6 m3, 7 R4."""
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    name, group = f"members-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4()}"
    broken = {"on": True}

    async def react(uow: UnitOfWork, env: EventEnvelope) -> None:
        if env.data["n"] == 13 and broken["on"]:
            raise ValueError("m2 is poison for now")
        await log_row(uow, env)

    reports = [of("InjuryReport", f"r{i}", 1, 13) for i in range(4)]  # 13: would fail if reacted to
    m1, m2, m3 = of("Member", "m", 1, 1), of("Member", "m", 2, 13), of("Member", "m", 3, 3)
    await publish(kafka, topic, [reports[0], m1, b"{garbage", reports[1], m2, reports[2], m3, reports[3]])

    inbox = inbox_of(engine, react, name=name)
    async with looping(inbox, kafka, topic, group):
        dead = await read_topic(kafka, dlq_topic(topic), expect=2, timeout=20)

        async def lag_is_zero() -> bool:
            return all(lag.lag == 0 for lag in await consumer_lag(kafka, {group: [topic]}))

        await eventually(lag_is_zero, timeout=20)
    by_offset = {d.headers["dlq_original_offset"]: d for d in dead}
    assert set(by_offset) == {b"2", b"4"}
    assert by_offset[b"4"].value == m2.to_bytes() and by_offset[b"4"].headers["dlq_attempts"] == b"2"
    assert await applied(engine) == [("m", 1)], "m3 waits behind the dead-lettered m2"
    assert await rows(engine, "SELECT stream_id, version FROM consumer_parked") == [("m", 3)]
    assert await rows(engine, "SELECT stream_id, version FROM consumer_streams") == [("m", 1)]
    assert {r[0] for r in await rows(engine, "SELECT event_id FROM inbox")} == {m1.event_id, m3.event_id}
    assert counted(name, "skipped") == 4 and counted(name, "parked") == 1
    assert counted(name, "dead_lettered") == 2

    # Fixed and replayed: m2, then the parked m3, in order; nothing of the reports ever ran.
    broken["on"] = False
    await publish(kafka, topic, [m2])
    async with looping(inbox, kafka, topic, group):

        async def caught_up() -> bool:
            return await applied(engine) == [("m", 1), ("m", 13), ("m", 3)]

        await eventually(caught_up, timeout=20)


async def test_the_kafka_loop_retries_a_transient_failure_behind_skipped_records(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    # 4 blips and 1 real failure (below max_attempts=2): retried, never dead-lettered.
    flaky: dict[int, list[type[Exception]]] = {7: [ConnectionResetError] * 4 + [ValueError]}
    batch = [of("Plan", "p", 1, 0), of("Member", "m", 1, 7), of("Plan", "p", 2, 0), of("Member", "m", 2, 8)]
    await publish(kafka, topic, list(batch))
    async with looping(inbox_of(engine, scripted(flaky)), kafka, topic, f"g-{uuid.uuid4()}"):

        async def done() -> bool:
            return await applied(engine) == [("m", 7), ("m", 8)]

        await eventually(done, timeout=20)
    assert flaky[7] == []
    assert await read_topic(kafka, dlq_topic(topic), expect=1, timeout=1) == []


# --- the services' own consumers -------------------------------------------------------------------


class Feed:
    """membership.events as the membership relay writes it: consecutive versions per stream."""

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


def _membership_story(feed: Feed) -> tuple[list[EventEnvelope], dict[str, uuid.UUID]]:
    ids = {k: uuid.uuid4() for k in ("old_union", "new_union", "member", "report")}
    plan = DEFAULT_PLANS[0]
    story = [
        feed(
            "Union",
            ids["old_union"],
            m.UnionRegistered(union_id=ids["old_union"], name="A", level="grassroots"),
        ),
        feed(
            "Member",
            ids["member"],
            m.MemberJoined(
                member_id=ids["member"],
                union_id=ids["old_union"],
                full_name="Test Member",
                gender=Gender.FEMALE,
                birth_date=date(1980, 3, 4),
                joined_on=date(2012, 5, 1),
            ),
        ),
        feed(
            "InjuryReport",
            ids["report"],
            m.InjuryReported(
                report_id=ids["report"],
                member_id=ids["member"],
                occurred_on=date(2016, 8, 2),
                work_related=False,
                reported_on=date(2016, 8, 2),
                member_version=1,
            ),
        ),
        feed("Plan", plan.code, m.PlanDefined.model_validate(plan.model_dump(mode="json"))),
        feed(
            "Union",
            ids["new_union"],
            m.UnionRegistered(union_id=ids["new_union"], name="B", level="grassroots"),
        ),
        feed(
            "Plan", plan.code, m.PlanDefined.model_validate(plan.model_dump(mode="json") | {"name": "edited"})
        ),
        feed(
            "Member",
            ids["member"],
            m.MemberTransferred(
                member_id=ids["member"],
                from_union_id=ids["old_union"],
                to_union_id=ids["new_union"],
                transferred_on=date(2014, 1, 1),
            ),
        ),
        feed(
            "Member",
            ids["member"],
            m.MemberLeft(member_id=ids["member"], left_on=date(2016, 9, 1), reason=m.LeaveReason.MOVED),
        ),
    ]
    return story, ids


def _runtime(service: str, database_url: str) -> tuple[ServiceRuntime, Any]:
    if service == "activities":
        from services.activities.app import MIGRATIONS as activities_migrations
        from services.activities.app import ActivitiesSettings
        from services.activities.app import build_runtime as activities_runtime

        return activities_runtime(
            ActivitiesSettings(ACTIVITIES_DATABASE_URL=database_url)
        ), activities_migrations
    if service == "counseling":
        from services.counseling.app import MIGRATIONS as counseling_migrations
        from services.counseling.app import build_runtime as counseling_runtime
        from services.counseling.settings import CounselingSettings

        settings = CounselingSettings(COUNSELING_DATABASE_URL=database_url)
        return counseling_runtime(settings), counseling_migrations
    from services.mediation.app import MIGRATIONS as mediation_migrations
    from services.mediation.app import build_runtime as mediation_runtime
    from services.mediation.settings import MediationSettings

    settings_m = MediationSettings(MEDIATION_DATABASE_URL=database_url)
    return mediation_runtime(settings_m), mediation_migrations


#: What each service's read model holds of the story: (sql, rows) with the ids filled in.
READ_MODEL: dict[str, Callable[[dict[str, uuid.UUID]], list[tuple[str, list[tuple[Any, ...]]]]]] = {
    "activities": lambda ids: [
        (
            "SELECT member_id, union_id, left_on FROM known_members",
            [(ids["member"], ids["new_union"], date(2016, 9, 1))],
        )
    ],
    "counseling": lambda ids: [
        ("SELECT member_id, union_id, active FROM members", [(ids["member"], ids["new_union"], False)])
    ],
    "mediation": lambda ids: [
        ("SELECT member_id, union_id, active FROM members", [(ids["member"], ids["new_union"], False)]),
        (
            "SELECT union_id, name FROM unions ORDER BY name",
            [(ids["old_union"], "A"), (ids["new_union"], "B")],
        ),
    ],
}


@pytest.mark.parametrize("service", ["activities", "counseling", "mediation"])
async def test_each_services_consumer_keeps_its_read_model_from_an_upgraded_database(
    service: str, database_url: str
) -> None:
    """The database already holds what the consumer wrote before the change for the streams it
    no longer follows (inbox rows, positions, a parked Plan edit): the followed streams are
    applied as before, and nothing new is written for the others."""
    runtime, migrations = _runtime(service, database_url)
    await upgrade_to_head(migrations, database_url)
    [sub] = runtime.subscriptions
    inbox = sub.consumer
    feed = Feed()
    story, ids = _membership_story(feed)
    followed = [e for e in story if e.aggregate_type in (inbox.follows or ())]
    plan_stream = story[3].aggregate_id
    try:
        async with runtime.engine.begin() as conn:
            statements: list[tuple[str, dict[str, Any]]] = [
                (
                    "INSERT INTO consumer_streams (consumer, stream_id, version) "
                    "VALUES (:c, :s, 1), (:c, :p, 7)",
                    {"c": inbox.name, "s": str(uuid.uuid4()), "p": plan_stream},
                ),
                (
                    "INSERT INTO consumer_parked (consumer, stream_id, version, envelope) "
                    "VALUES (:c, :p, 9, CAST(:e AS jsonb))",
                    {"c": inbox.name, "p": plan_stream, "e": story[3].model_dump_json()},
                ),
                (
                    "INSERT INTO inbox (consumer, event_id, outcome) VALUES (:c, :e, 'processed')",
                    {"c": inbox.name, "e": uuid.uuid4()},
                ),
            ]
            for sql, params in statements:
                await conn.execute(sa.text(sql), params)

        result = await inbox.apply(story)
        assert [o for e, o in zip(story, result.outcomes, strict=True) if e not in followed] == [
            Outcome.SKIPPED
        ] * (len(story) - len(followed))
        assert result.dead_letters == []
        for sql, expected in READ_MODEL[service](ids):
            assert await rows(runtime.engine, sql) == expected, sql
        inbox_rows = await rows(runtime.engine, f"SELECT event_id FROM inbox WHERE consumer = '{inbox.name}'")
        assert {e.event_id for e in followed} <= {r[0] for r in inbox_rows}
        assert not {e.event_id for e in story if e not in followed} & {r[0] for r in inbox_rows}
        positions = dict(await rows(runtime.engine, "SELECT stream_id, version FROM consumer_streams"))
        assert positions[str(ids["member"])] == 3
        assert positions[plan_stream] == 7, "an old position of an unfollowed stream is left as it was"
        assert str(ids["report"]) not in positions

        # Redelivered whole: the followed events are duplicates, nothing changes.
        again = await inbox.apply(story)
        assert {again.outcomes[i] for i, e in enumerate(story) if e in followed} == {Outcome.DUPLICATE}
        for sql, expected in READ_MODEL[service](ids):
            assert await rows(runtime.engine, sql) == expected, sql
    finally:
        await runtime.engine.dispose()


# --- defects ------------------------------------------------------------------------------------


async def test_follows_given_a_bare_string_is_refused(engine: AsyncEngine) -> None:
    """``follows`` is typed ``Collection[str]``, which a ``str`` is: ``follows="Member"`` (or the
    one-element tuple typo ``("Member")``) passes mypy and becomes ``frozenset("Member")``, the
    letters M, e, m, b, r. Every Member event is then SKIPPED: the read model silently stops
    being fed, with no error, no dead letter and nothing parked. Expected: refused at
    construction (TypeError/ValueError), or the string taken as one aggregate type."""
    try:
        inbox = inbox_of(engine, log_row, follows="Member")
    except (TypeError, ValueError):
        return  # refused: fine
    result = await inbox.apply([of("Member", "m", 1, 1)])
    assert result.outcomes == [Outcome.PROCESSED], f"a Member event was {result.outcomes[0]}"


async def test_widening_follows_needs_the_consumer_replayed_from_its_first_version(
    engine: AsyncEngine,
) -> None:
    """Review 8c found that a stream passed over while unfollowed has no position: once followed
    (``follows`` widened, or the change rolled back), its next event parks behind versions that
    will not come again. That is the documented rule (``InboxConsumer.follows``, README
    "Operations"): widening ``follows`` means replaying the consumer from the start, as a new
    reaction needs those streams' history anyway. Shown: the park, and the replay releasing it."""
    before = inbox_of(engine, log_row, follows=("Member",))
    assert (await before.apply([of("Union", "u", 1, 1)])).outcomes == [Outcome.SKIPPED]

    widened = inbox_of(engine, log_row, follows=("Member", "Union"))  # same consumer name
    assert (await widened.apply([of("Union", "u", 2, 2)])).outcomes == [Outcome.PARKED]
    replayed = await widened.apply([of("Union", "u", 1, 1), of("Union", "u", 2, 2)])
    assert replayed.outcomes == [Outcome.PROCESSED, Outcome.DUPLICATE]
    assert await rows(engine, "SELECT stream_id, version FROM consumer_streams WHERE stream_id = 'u'") == [
        ("u", 2)
    ]


async def test_the_upgrade_drops_parked_events_of_unfollowed_streams(engine: AsyncEngine) -> None:
    """Before the upgrade the consumer parked Plan v2 (v1 not seen yet: the relay's retry order);
    after it, v1 is SKIPPED without a look at the park, so v2's row could never be released and
    would read as a dead letter to replay. The services' revision (activities 0004, counseling
    0004, mediation 0006) drops such rows; a followed stream's parked event stays."""
    old = inbox_of(engine, log_row, follows=None)
    assert (await old.apply([of("Plan", "p", 2, 2), of("Member", "m", 2, 2)])).outcomes == [
        Outcome.PARKED,
        Outcome.PARKED,
    ]
    async with engine.begin() as conn:
        await conn.run_sync(
            lambda sync: forget_parked_of_unfollowed_streams(old.name, ("Member",), bind=sync)
        )
    assert await rows(engine, "SELECT stream_id, version FROM consumer_parked") == [("m", 2)]
    upgraded = inbox_of(engine, log_row, follows=("Member",))
    assert (await upgraded.apply([of("Plan", "p", 1, 1), of("Member", "m", 1, 1)])).outcomes == [
        Outcome.SKIPPED,
        Outcome.PROCESSED,
    ]
    assert await rows(engine, "SELECT stream_id, version FROM consumer_parked") == []
