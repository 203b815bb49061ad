"""The batched consumer on the real broker: redelivery, replay, order per stream, failures, DLQ."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Mapping

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.consumer import KafkaConsumerLoop
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer, Reaction
from shared.kafka import dlq_topic, ensure_topics
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import Counted, registry
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration

LOG_DDL = "CREATE TABLE applied (seq bigserial PRIMARY KEY, stream_id text NOT NULL, n int NOT NULL)"


async def record(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    """The reaction under test: append (stream, n) to a log, so order and repeats are visible."""
    if envelope.data.get("n") == 13:
        raise ValueError("thirteen is poison")
    await uow.conn.execute(
        sa.text("INSERT INTO applied (stream_id, n) VALUES (:s, :n)"),
        {"s": envelope.aggregate_id, "n": envelope.data["n"]},
    )


def envelope(stream: str, version: int, n: int, event_type: str = "Counted") -> EventEnvelope:
    es = EventStore("upstream", registry)
    [env] = es.envelopes("Counter", stream, version - 1, [Counted(n=n)], correlation_id=uuid.uuid4())
    return env.model_copy(update={"event_type": event_type})


async def publish(kafka: str, topic: str, messages: list[EventEnvelope | bytes]) -> None:
    """Envelopes go out as the relay sends them (key and contract headers); bytes as they are."""
    producer = AIOKafkaProducer(bootstrap_servers=kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for m in messages:
            if isinstance(m, EventEnvelope):
                await producer.send_and_wait(
                    topic, m.to_bytes(), key=m.kafka_key(), headers=m.kafka_headers()
                )
            else:
                await producer.send_and_wait(topic, m, key=b"garbage")
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def consuming(
    engine: AsyncEngine,
    kafka: str,
    topic: str,
    *,
    group: str,
    max_attempts: int = 3,
    reactions: Mapping[str, Reaction] | None = None,
    name: str = "log",
) -> AsyncIterator[KafkaConsumerLoop]:
    inbox = InboxConsumer(name, engine, EventStore("downstream", registry), reactions or {"Counted": record})
    loop = KafkaConsumerLoop(
        inbox, kafka, topic, group, max_attempts=max_attempts, retry_backoff=0.01, max_backoff=0.05
    )
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        yield loop
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def applied(engine: AsyncEngine, stream: str) -> list[int]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT n FROM applied WHERE stream_id = :s ORDER BY seq"), {"s": stream}
        )
        return [int(r[0]) for r in rows]


def applied_is(engine: AsyncEngine, stream: str, expected: list[int]):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return await applied(engine, stream) == expected

    return check


@pytest.fixture
async def engine(core_engine: AsyncEngine) -> AsyncEngine:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text(LOG_DDL))
    return core_engine


async def test_same_event_twice_and_full_replay_change_state_once(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    await ensure_topics(kafka, [topic], partitions=1)
    first, second = envelope("s", 1, 5), envelope("s", 2, 7)
    await publish(kafka, topic, [first, first, second])

    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        await eventually(applied_is(engine, "s", [5, 7]))
    # A new group replays the whole topic from offset 0 into the same inbox.
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        await publish(kafka, topic, [envelope("marker", 1, 1)])
        await eventually(applied_is(engine, "marker", [1]))
    assert await applied(engine, "s") == [5, 7]


async def test_a_stream_is_applied_in_version_order_whatever_order_kafka_holds(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """The relay can leave A2, A1, A2 in the log after a partial failure: A2 must wait for A1."""
    await ensure_topics(kafka, [topic], partitions=1)
    a1, a2, a3 = envelope("a", 1, 1), envelope("a", 2, 2), envelope("a", 3, 3)
    await publish(kafka, topic, [a2, a3, a1, a2, a3])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        await eventually(applied_is(engine, "a", [1, 2, 3]))
        await publish(kafka, topic, [envelope("end", 1, 0)])
        await eventually(applied_is(engine, "end", [0]))
    assert await applied(engine, "a") == [1, 2, 3]
    async with engine.connect() as conn:
        assert await conn.scalar(sa.text("SELECT count(*) FROM consumer_parked")) == 0


async def test_poison_message_goes_to_dlq_and_the_partition_moves_on_while_its_stream_waits(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    poison = envelope("p", 1, 13)
    behind = [envelope("p", 2, 1), envelope("p", 3, 2)]
    garbage = b"{not json"
    other = envelope("q", 1, 4)
    await publish(kafka, topic, [poison, garbage, *behind, other])

    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=3):
        await eventually(applied_is(engine, "q", [4]))  # the partition moved on ...
        dead = await read_topic(kafka, dlq_topic(topic), expect=2, timeout=20)
        assert await applied(engine, "p") == []  # ... but p2, p3 never run before p1

    assert len(dead) == 2
    by_value = {d.value: d for d in dead}
    failed = by_value[poison.to_bytes()]
    assert failed.headers["dlq_attempts"] == b"3"
    assert b"ValueError" in failed.headers["dlq_error"]
    assert failed.headers["dlq_original_topic"] == topic.encode()
    assert failed.headers["event_id"] == str(poison.event_id).encode()  # original headers kept
    assert by_value[garbage].headers["dlq_attempts"] == b"1", "unparseable: no point retrying"

    # The cause is fixed and the dead letter replayed: p1, then the parked p2 and p3, in order.
    async def forgiving(uow: UnitOfWork, env: EventEnvelope) -> None:
        await record(uow, env.model_copy(update={"data": {"n": 0}}) if env.data["n"] == 13 else env)

    await publish(kafka, topic, [poison])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}", reactions={"Counted": forgiving}):
        await eventually(applied_is(engine, "p", [0, 1, 2]))


async def test_unknown_event_types_and_fields_are_tolerated_and_still_count_as_versions(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    await ensure_topics(kafka, [topic], partitions=1)
    unknown = envelope("u", 1, 100, event_type="SomethingNew")
    extra = json.loads(envelope("u", 2, 4).to_bytes())
    extra["future_field"] = {"x": 1}
    extra["data"]["also_new"] = True
    await publish(kafka, topic, [unknown, json.dumps(extra).encode()])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        await eventually(applied_is(engine, "u", [4]))


async def test_transient_failures_are_retried_past_max_attempts_not_dead_lettered(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """A database blip says nothing about the message: it must be waited out, not dead-lettered."""
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    failures = {"left": 6}

    async def flaky(uow: UnitOfWork, env: EventEnvelope) -> None:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise ConnectionResetError("database went away")
        await record(uow, env)

    await publish(kafka, topic, [envelope("t", 1, 9)])
    async with consuming(
        engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=2, reactions={"Counted": flaky}
    ):
        await eventually(applied_is(engine, "t", [9]))
    assert failures["left"] == 0
    assert await read_topic(kafka, dlq_topic(topic), expect=1, timeout=2) == []


async def test_transient_retries_do_not_count_toward_the_dead_letter_limit(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """Four transient errors, then one real one, with max_attempts=2: one real failure is below
    the limit, so the event is retried and applied, not dead-lettered."""
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    script = ["transient"] * 4 + ["failure"]

    async def scripted(uow: UnitOfWork, env: EventEnvelope) -> None:
        if script:
            kind = script.pop(0)
            raise ConnectionResetError("blip") if kind == "transient" else ValueError("a real bug")
        await record(uow, env)

    await publish(kafka, topic, [envelope("r", 1, 3)])
    async with consuming(
        engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=2, reactions={"Counted": scripted}
    ):
        await eventually(applied_is(engine, "r", [3]))
    assert script == []
    assert await read_topic(kafka, dlq_topic(topic), expect=1, timeout=2) == []


async def test_a_failing_event_in_a_batch_commits_what_came_before_and_stops_its_partition(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """b1, b2 (fails twice, then works), b3 in one batch: b1 commits first, b3 never runs before b2."""
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    fails = {"left": 2}
    seen: list[int] = []

    async def picky(uow: UnitOfWork, env: EventEnvelope) -> None:
        seen.append(env.data["n"])
        if env.data["n"] == 2 and fails["left"] > 0:
            fails["left"] -= 1
            raise ValueError("not yet")
        await record(uow, env)

    await publish(kafka, topic, [envelope("b", 1, 1), envelope("b", 2, 2), envelope("b", 3, 3)])
    async with consuming(
        engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=5, reactions={"Counted": picky}
    ):
        await eventually(applied_is(engine, "b", [1, 2, 3]))
    assert 3 not in seen[: seen.index(2) + 3], f"b3 ran before b2 succeeded: {seen}"
    assert await read_topic(kafka, dlq_topic(topic), expect=1, timeout=2) == []


async def test_partitions_are_worked_concurrently_each_in_order(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    await ensure_topics(kafka, [topic], partitions=4)
    streams = [f"c{i}" for i in range(12)]
    # n = 100 + version: 13 is the poison number of ``record``.
    await publish(kafka, topic, [envelope(s, v, 100 + v) for v in range(1, 21) for s in streams])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        for s in streams:
            await eventually(applied_is(engine, s, list(range(101, 121))))
    async with engine.connect() as conn:
        rows = await conn.scalar(sa.text("SELECT count(*) FROM applied"))
    assert rows == 12 * 20
