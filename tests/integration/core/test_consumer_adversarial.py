"""Adversarial review of the batched consumer, on the real broker and database.

Tests marked ``DEFECT`` in their docstring fail on the code they were written against: each one
proves a defect. The others are attacks the code withstood, kept as regression tests.
"""

from __future__ import annotations

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.envelope import EventEnvelope
from shared.kafka import dlq_topic, ensure_topics
from shared.unit_of_work import UnitOfWork
from tests.integration.core.test_consumer import (
    LOG_DDL,
    applied,
    applied_is,
    consuming,
    envelope,
    publish,
    record,
)
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(core_engine: AsyncEngine) -> AsyncEngine:
    async with core_engine.begin() as conn:
        await conn.execute(sa.text(LOG_DDL))
    return core_engine


async def _parked(engine: AsyncEngine) -> list[tuple[str, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(sa.text("SELECT stream_id, version FROM consumer_parked ORDER BY 1, 2"))
        return [(r[0], int(r[1])) for r in rows]


# --- defects ---------------------------------------------------------------------------------------


async def test_envelope_with_out_of_range_version_does_not_block_its_partition_forever(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """DEFECT. A message that *is* a valid envelope (pydantic only asks ``aggregate_version >= 1``)
    but whose version does not fit the ``int`` columns (2**31) is parked by the inbox: the
    ``_PARK`` INSERT fails with a data error *outside* any reaction. ``_partition`` treats every
    exception outside a reaction as transient, so the batch is retried with backoff forever: the
    event is never dead-lettered and every later record of the partition (here ``ok`` on another
    stream) is blocked for good. Expected: a deterministic data error is the message's own fault,
    so it is dead-lettered (after ``max_attempts``) and the partition moves on."""
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    bad = envelope("huge", 1, 1).model_copy(update={"aggregate_version": 2**31})
    ok = envelope("ok", 1, 7)
    await publish(kafka, topic, [bad, ok])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=2):
        await eventually(applied_is(engine, "ok", [7]), timeout=15)


async def test_envelope_with_nul_in_aggregate_id_does_not_block_its_partition_forever(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """DEFECT. Same class as above, different trigger: ``aggregate_id`` containing U+0000 is a valid
    JSON string and a valid envelope, but PostgreSQL ``text`` cannot hold NUL, so the inbox's
    position query (before any reaction runs) fails on every try. The consumer calls that
    "transient", retries it forever and the partition never reaches ``ok``."""
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    bad = envelope("nul\x00id", 1, 1)
    ok = envelope("ok", 1, 7)
    await publish(kafka, topic, [bad, ok])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=2):
        await eventually(applied_is(engine, "ok", [7]), timeout=15)


async def test_a_parked_successors_failure_does_not_dead_letter_its_healthy_predecessor(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """DEFECT. x2 (whose reaction always raises: n=13) arrives before x1 and is parked. x1's own
    reaction is fine, but ``apply`` unparks x2 inside x1's ``try`` and raises
    ``ReactionFailed(index_of_x1)``: the failure is blamed on x1, x1 is retried ``max_attempts``
    times and dead-lettered, x2 stays parked. Observed: x1 on the DLQ, nothing of stream x applied,
    and a replay of x1 from the DLQ fails in exactly the same way (x2 is still parked behind it), so
    the stream can never recover by replaying its dead letters. Expected: x1 is applied (its
    reaction succeeded) and x2 — the event that fails — is the one that is dead-lettered/held."""
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    x1, x2 = envelope("x", 1, 1), envelope("x", 2, 13)
    await publish(kafka, topic, [x2, x1, envelope("end", 1, 0)])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=2):
        await eventually(applied_is(engine, "end", [0]), timeout=20)
        dead = await read_topic(kafka, dlq_topic(topic), expect=1, timeout=3)
    dead_ids = {EventEnvelope.from_bytes(d.value).event_id for d in dead}
    assert x1.event_id not in dead_ids, "the healthy predecessor x1 was dead-lettered for x2's failure"
    assert await applied(engine, "x") == [1]


# --- attacks the code withstood (regression tests) -------------------------------------------------


async def test_same_version_under_another_event_id_and_repeats_inside_one_batch_apply_once(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """Holds. In ONE batch: s2 (parked), s2 again (same id), s1 (fills the gap: s2 is unparked in
    the same transaction), s1' (another event id, same version), s3. Applied exactly 1, 2, 3; no
    parked row left behind."""
    await ensure_topics(kafka, [topic], partitions=1)
    s1, s2, s3 = envelope("s", 1, 1), envelope("s", 2, 2), envelope("s", 3, 3)
    s1_other_id = envelope("s", 1, 99)
    await publish(kafka, topic, [s2, s2, s1, s1_other_id, s3, s2, envelope("end", 1, 0)])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        await eventually(applied_is(engine, "end", [0]))
    assert await applied(engine, "s") == [1, 2, 3]
    assert await _parked(engine) == []


async def test_redelivery_after_a_crash_between_db_commit_and_offset_commit_is_a_no_op(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """Holds. A parked event and its releaser committed to the database, but the offsets are never
    committed (simulated by a fresh group replaying from 0 into the same inbox): nothing is applied
    twice, nothing is re-parked."""
    await ensure_topics(kafka, [topic], partitions=2)
    msgs = [envelope("r", 2, 2), envelope("r", 1, 1), envelope("r", 3, 3), envelope("q", 1, 5)]
    await publish(kafka, topic, msgs)
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        await eventually(applied_is(engine, "r", [1, 2, 3]))
        await eventually(applied_is(engine, "q", [5]))
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}"):
        await publish(kafka, topic, [envelope("marker", 1, 1)])
        await eventually(applied_is(engine, "marker", [1]))
    assert await applied(engine, "r") == [1, 2, 3]
    assert await applied(engine, "q") == [5]
    assert await _parked(engine) == []


async def test_partitions_moving_between_two_loops_mid_stream_apply_every_event_once_in_order(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """Holds. A slow reaction (every event sleeps, so batches are long and often in flight); a
    second loop joins the group mid-stream, then the first leaves mid-stream, then it rejoins.
    Every stream is applied exactly once, in version order, with no parked leftovers."""
    await ensure_topics(kafka, [topic], partitions=4)
    streams = [f"m{i}" for i in range(8)]
    per_stream = 25

    async def slow(uow: UnitOfWork, env: EventEnvelope) -> None:
        await asyncio.sleep(0.004)
        await record(uow, env)

    await publish(kafka, topic, [envelope(s, v, 100 + v) for v in range(1, per_stream + 1) for s in streams])
    group = f"g-{uuid.uuid4()}"
    expected = list(range(101, 101 + per_stream))

    async def total() -> int:
        async with engine.connect() as conn:
            return int(await conn.scalar(sa.text("SELECT count(*) FROM applied")) or 0)

    async with consuming(engine, kafka, topic, group=group, reactions={"Counted": slow}) as a:
        await asyncio.wait_for(a.assigned.wait(), 20)
        async with consuming(engine, kafka, topic, group=group, reactions={"Counted": slow}):
            await eventually(lambda: _above(total, 40), timeout=30)
            # ``a`` leaves while batches are in flight (the outer context stops it below)
            # and a third member joins in its place.
            async with consuming(engine, kafka, topic, group=group, reactions={"Counted": slow}):
                await eventually(lambda: _above(total, 100), timeout=30)
                for s in streams:
                    await eventually(applied_is(engine, s, expected), timeout=60)
    for s in streams:
        assert await applied(engine, s) == expected
    assert await _parked(engine) == []


async def _above(total, n: int) -> bool:  # type: ignore[no-untyped-def]
    return await total() >= n


async def test_a_poison_message_near_the_size_limit_is_dead_lettered_not_retried_forever(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """DEFECT. A non-envelope message just under the producer's 1 MiB ``max_request_size`` is
    accepted by the broker. To dead-letter it, ``_dead_letter`` re-sends the same key and value
    plus six ``dlq_*`` headers, which pushes it over the limit: aiokafka raises
    ``MessageSizeTooLargeError`` (a ``KafkaError``) on every try, and ``_dead_letter`` retries
    every ``KafkaError`` forever. The partition is stuck behind it for good; ``ok`` never runs.
    Expected: a non-retriable publish error (size) ends the retries: dead-letter a truncated copy
    / headers only, or skip-and-log, and move on."""
    from aiokafka.record.default_records import DefaultRecordBatchBuilder

    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)
    limit, key = 1048576, b"garbage"
    size = limit - 2000
    while DefaultRecordBatchBuilder.estimate_size_in_bytes(key, b"x" * (size + 1), []) <= limit - 16:
        size += 1
    big = b"{" + b"x" * (size - 1)  # not JSON: dead-lettered at once, no retries
    await publish(kafka, topic, [big, envelope("ok", 1, 7)])
    async with consuming(engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=2):
        await eventually(applied_is(engine, "ok", [7]), timeout=15)


async def test_handover_during_transient_backoff_skips_nothing_and_applies_nothing_twice(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """Holds. Every 5th event fails transiently on its first try, and the backoff is long (0.6 s
    up to 2 s), so batches are often sleeping in ``_pause`` when the group rebalances: a second
    loop joins, then the first leaves. Each interrupted batch commits its prefix and seeks back;
    the next owner must start exactly there. Both loops must have applied something (the
    partitions really moved) and every stream is applied once, in order."""
    from shared.consumer import KafkaConsumerLoop
    from shared.eventstore import EventStore
    from shared.inbox import InboxConsumer
    from tests.integration.core.sample import registry

    await ensure_topics(kafka, [topic], partitions=4)
    streams, per_stream = [f"h{i}" for i in range(8)], 20
    tried: set[uuid.UUID] = set()
    by_loop: dict[str, int] = {"a": 0, "b": 0}

    def reaction(who: str):  # type: ignore[no-untyped-def]
        async def react(uow: UnitOfWork, env: EventEnvelope) -> None:
            if env.aggregate_version % 5 == 0 and env.event_id not in tried:
                tried.add(env.event_id)
                raise ConnectionResetError("blip")
            await asyncio.sleep(0.002)
            await record(uow, env)
            by_loop[who] += 1

        return react

    def loop(who: str) -> KafkaConsumerLoop:
        inbox = InboxConsumer("log", engine, EventStore("downstream", registry), {"Counted": reaction(who)})
        return KafkaConsumerLoop(inbox, kafka, topic, group, retry_backoff=0.3, max_backoff=2.0)

    group = f"g-{uuid.uuid4()}"
    await publish(kafka, topic, [envelope(s, v, 100 + v) for v in range(1, per_stream + 1) for s in streams])
    expected = list(range(101, 101 + per_stream))
    a, b = loop("a"), loop("b")
    stop_a, stop_b = asyncio.Event(), asyncio.Event()
    task_a = asyncio.create_task(a.run(stop_a))
    try:
        await asyncio.wait_for(a.assigned.wait(), 20)
        await asyncio.sleep(0.5)  # a is mid-stream, sleeping in backoffs
        task_b = asyncio.create_task(b.run(stop_b))
        try:
            await asyncio.wait_for(b.assigned.wait(), 30)
            await asyncio.sleep(1.0)
            stop_a.set()
            await asyncio.wait_for(task_a, 30)
            for s in streams:
                await eventually(applied_is(engine, s, expected), timeout=60)
        finally:
            stop_b.set()
            await asyncio.wait_for(task_b, 30)
    finally:
        stop_a.set()
        await asyncio.wait_for(task_a, 30)
    for s in streams:
        assert await applied(engine, s) == expected
    assert by_loop["a"] > 0 and by_loop["b"] > 0, by_loop
    assert await _parked(engine) == []


async def test_a_reaction_whose_statement_fails_mid_batch_costs_only_its_own_event(
    engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """Holds. One batch: a1, b1 (its reaction runs a statement PostgreSQL rejects: division by
    zero, which aborts the transaction), c1. The aborted transaction is rolled back whole; a1 is
    committed alone, b1 is retried ``max_attempts`` times and dead-lettered, c1 then applies."""
    await ensure_topics(kafka, [topic, dlq_topic(topic)], partitions=1)

    async def divides(uow: UnitOfWork, env: EventEnvelope) -> None:
        if env.aggregate_id == "b":
            await uow.conn.execute(sa.text("SELECT 1 / 0"))
        await record(uow, env)

    b1 = envelope("b", 1, 2)
    await publish(kafka, topic, [envelope("a", 1, 1), b1, envelope("c", 1, 3)])
    async with consuming(
        engine, kafka, topic, group=f"g-{uuid.uuid4()}", max_attempts=2, reactions={"Counted": divides}
    ):
        await eventually(applied_is(engine, "c", [3]), timeout=20)
        dead = await read_topic(kafka, dlq_topic(topic), expect=1, timeout=5)
    assert await applied(engine, "a") == [1]
    assert await applied(engine, "b") == []
    assert [EventEnvelope.from_bytes(d.value).event_id for d in dead] == [b1.event_id]
