"""Issue 16, item 1: a record Kafka refuses for good holds back its own aggregate, not the relay.

Before, the relay retried the refused head of the outbox for ever and nothing behind it was
published. Real PostgreSQL and the real broker; the event store's own size check is lifted so the
oversized events can be stored as they were before it existed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import held as ops
from shared.eventstore import EventStore
from shared.relay import HELD_BACK, OutboxRelay
from shared.tables import outbox, outbox_held
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import Renamed, registry
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration


def store() -> EventStore:
    return EventStore("core-test", registry, max_event_bytes=4 * 1024 * 1024)


async def append(engine: AsyncEngine, stream: str, version: int, name: str) -> None:
    async with UnitOfWork(engine, store()) as uow:
        batch = uow.store.envelopes(
            "Counter", stream, version, [Renamed(new_name=name, reason="test")], correlation_id=uuid.uuid4()
        )
        await uow.store.append(uow.conn, batch)
        await uow.commit()


@contextlib.asynccontextmanager
async def running(relay: OutboxRelay) -> AsyncIterator[None]:
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    try:
        yield
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)


async def held(engine: AsyncEngine) -> list[dict[str, object]]:
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(sa.select(outbox_held))).mappings()]


async def queued(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(outbox)) or 0)


def versions_by_stream(messages: list[object]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for m in messages:
        env = json.loads(m.value)  # type: ignore[attr-defined]
        out.setdefault(env["aggregate_id"], []).append(env["aggregate_version"])
    return out


async def test_a_record_too_large_for_the_producer_holds_back_only_its_aggregate(
    core_engine: AsyncEngine, kafka: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    a, big, c = (str(uuid.uuid4()) for _ in range(3))
    await append(core_engine, a, 0, "a1")
    await append(core_engine, big, 0, "x" * 1_500_000)  # over aiokafka's 1 MiB max_request_size
    await append(core_engine, big, 1, "big2")  # must wait behind the refused one: order per stream
    await append(core_engine, c, 0, "c1")
    await append(core_engine, a, 1, "a2")
    caplog.set_level(logging.INFO, logger="shared.relay")

    relay = OutboxRelay(core_engine, store(), topic, kafka, poll_interval=0.2)
    async with running(relay):
        received = await read_topic(kafka, topic, expect=3, timeout=30)
        assert versions_by_stream(received) == {a: [1, 2], c: [1]}
        [row] = await held(core_engine)
        assert row["stream_id"] == big and row["error"] == "MessageSizeTooLargeError"
        assert row["event_type"] == "Renamed" and int(str(row["value_bytes"])) > 1_500_000
        assert await queued(core_engine) == 2, "the refused event and the one behind it stay queued"
        assert HELD_BACK.labels(topic)._value.get() == 2

        alerts = [r for r in caplog.records if r.levelno >= logging.ERROR and "ALERT" in r.getMessage()]
        assert len(alerts) == 1 and big in alerts[0].getMessage()
        assert "xxxx" not in alerts[0].getMessage(), "no payload in the log"

        # Other aggregates keep flowing while one is held.
        await append(core_engine, c, 1, "c2")
        await eventually(lambda: _queued_is(core_engine, 2), timeout=20)

        listed = await ops.held_streams(core_engine)
        assert [(r["stream_id"], r["waiting"]) for r in listed] == [(big, 2)]
        # Released: tried again, refused again, held again (nothing lost, nothing reordered).
        assert await ops.release(core_engine, big) is True
        await eventually(lambda: _held_count_is(core_engine, 1), timeout=20)
        # Dropped: the refused event is unqueued and the rest of its stream goes out.
        position = await ops.drop(core_engine, big)
        assert position is not None
        await eventually(lambda: _queued_is(core_engine, 0), timeout=20)

    received = await read_topic(kafka, topic, expect=5, timeout=30)
    assert versions_by_stream(received) == {a: [1, 2], c: [1, 2], big: [2]}
    assert await ops.drop(core_engine, big) is None


async def test_a_record_the_broker_refuses_holds_back_only_its_aggregate(
    core_engine: AsyncEngine, kafka: str, topic: str
) -> None:
    """The broker's own max.message.bytes (smaller than the producer's limit): the refusal comes
    back on the delivery future, not from send()."""
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    topic,
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"max.message.bytes": "20000"},
                )
            ]
        )
    finally:
        await admin.close()
    a, big = str(uuid.uuid4()), str(uuid.uuid4())
    await append(core_engine, big, 0, "y" * 50_000)
    await append(core_engine, a, 0, "a1")

    relay = OutboxRelay(core_engine, store(), topic, kafka, poll_interval=0.2)
    async with running(relay):
        await eventually(lambda: _held_count_is(core_engine, 1), timeout=30)
        received = await read_topic(kafka, topic, expect=1, timeout=30)
        assert versions_by_stream(received) == {a: [1]}
        [row] = await held(core_engine)
        assert row["stream_id"] == big and row["error"] == "MessageSizeTooLargeError"


async def _queued_is(engine: AsyncEngine, n: int) -> bool:
    return await queued(engine) == n


async def _held_count_is(engine: AsyncEngine, n: int) -> bool:
    return len(await held(engine)) == n


def test_the_ops_command_lists_and_resolves_held_streams(database_url: str) -> None:
    """`python -m services.claims ops held ...` on a fresh database (it migrates it first)."""
    import os
    import subprocess
    import sys

    from tests.kafka_broker import REPO

    env = {**os.environ, "CLAIMS_DATABASE_URL": database_url}

    def ops_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "services.claims", "ops", "held", *args],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    listed = ops_cli("list")
    assert listed.returncode == 0 and "no held streams" in listed.stdout, listed.stderr
    missing = ops_cli("release", "no-such-stream")
    assert missing.returncode == 1 and "not held" in missing.stdout
    assert ops_cli("drop", "no-such-stream").returncode == 1
