"""The inbox consumer on the real broker: redelivery, replay, poison messages, unknown types."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer
from shared.kafka import dlq_topic, ensure_topics
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import Counted, registry
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration

TALLY_DDL = "CREATE TABLE tally (stream_id text PRIMARY KEY, total int NOT NULL)"


async def add_to_tally(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    if envelope.data.get("n") == 13:
        raise ValueError("thirteen is poison")
    await uow.conn.execute(
        sa.text(
            "INSERT INTO tally VALUES (:s, :n) "
            "ON CONFLICT (stream_id) DO UPDATE SET total = tally.total + EXCLUDED.total"
        ),
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
    engine: AsyncEngine, kafka: str, topic: str, *, group: str, max_attempts: int = 3
) -> AsyncIterator[InboxConsumer]:
    consumer = InboxConsumer(
        "tally",
        engine,
        EventStore("downstream", registry),
        {"Counted": add_to_tally},
        max_attempts=max_attempts,
        retry_backoff=0.01,
    )
    broker = KafkaBroker(kafka)
    consumer.attach(broker, topic, group_id=group)
    await broker.start()
    try:
        yield consumer
    finally:
        await broker.stop()


async def tally(engine: AsyncEngine, stream: str) -> int | None:
    async with engine.connect() as conn:
        value = await conn.scalar(sa.text("SELECT total FROM tally WHERE stream_id = :s"), {"s": stream})
    return None if value is None else int(value)


@pytest.fixture
async def engine(core_engine: AsyncEngine) -> AsyncEngine:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text(TALLY_DDL))
    return core_engine


async def test_same_event_twice_and_full_replay_change_state_once(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    await ensure_topics(kafka, [topic], partitions=1)
    first, second = envelope("s", 1, 5), envelope("s", 2, 7)
    await publish(kafka, topic, [first, first, second])

    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        await eventually(lambda: tally_is(engine, "s", 12))
    # A new group replays the whole topic from offset 0 into the same inbox.
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}") as c:
        marker = envelope("marker", 1, 1)
        await publish(kafka, topic, [marker])
        await eventually(lambda: tally_is(engine, "marker", 1))
    assert await tally(engine, "s") == 12
    assert c.name == "tally"


async def test_poison_message_goes_to_dlq_and_the_partition_moves_on(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    poison = envelope("p", 1, 13)
    behind = [envelope("p", 2, 1), envelope("p", 3, 2)]
    garbage = b"{not json"
    await publish(kafka, topic, [poison, garbage, *behind])

    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=3):
        await eventually(lambda: tally_is(engine, "p", 3))

    dead = await read_topic(kafka, dlq_topic(topic), expect=2, timeout=20)
    assert len(dead) == 2
    by_value = {d.value: d for d in dead}
    failed = by_value[poison.to_bytes()]
    assert failed.headers["dlq_attempts"] == b"3"
    assert b"ValueError" in failed.headers["dlq_error"]
    assert failed.headers["dlq_original_topic"] == topic.encode()
    assert failed.headers["event_id"] == str(poison.event_id).encode()  # original headers kept
    assert by_value[garbage].headers["dlq_attempts"] == b"1", "unparseable: no point retrying"


async def test_unknown_event_types_and_fields_are_tolerated(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    await ensure_topics(kafka, [topic], partitions=1)
    unknown = envelope("u", 1, 100, event_type="SomethingNew")
    extra = json.loads(envelope("u", 2, 4).to_bytes())
    extra["future_field"] = {"x": 1}
    extra["data"]["also_new"] = True
    await publish(kafka, topic, [unknown, json.dumps(extra).encode()])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        await eventually(lambda: tally_is(engine, "u", 4))
    await asyncio.sleep(0)


async def tally_is(engine: AsyncEngine, stream: str, expected: int) -> bool:
    return await tally(engine, stream) == expected


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
        await add_to_tally(uow, env)

    consumer = InboxConsumer(
        "flaky",
        engine,
        EventStore("downstream", registry),
        {"Counted": flaky},
        max_attempts=2,
        retry_backoff=0.01,
        max_backoff=0.05,
    )
    broker = KafkaBroker(kafka)
    consumer.attach(broker, topic, group_id=f"g-{uuid.uuid4()}")
    await publish(kafka, topic, [envelope("t", 1, 9)])
    await broker.start()
    try:
        await eventually(lambda: tally_is(engine, "t", 9))
    finally:
        await broker.stop()
    assert failures["left"] == 0
    assert await read_topic(kafka, dlq_topic(topic), expect=1, timeout=2) == []
