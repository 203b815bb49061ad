"""`python -m services.<name> ops …` against the real PostgreSQL and Kafka."""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
import uuid
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from prometheus_client import REGISTRY
from sqlalchemy.ext.asyncio import AsyncEngine

from services.membership.app import build_runtime, create_app
from services.membership.settings import MembershipSettings
from shared import ops
from shared.consumer import KafkaConsumerLoop
from shared.envelope import EventEnvelope
from shared.eventstore import EventStore
from shared.inbox import InboxConsumer
from shared.kafka import dlq_topic, ensure_topics
from shared.runtime import ServiceRuntime
from shared.unit_of_work import UnitOfWork
from tests.integration.core.sample import registry
from tests.integration.core.test_consumer import envelope, publish
from tests.kafka_broker import REPO
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration

TALLY_DDL = "CREATE TABLE tally (stream_id text PRIMARY KEY, total int NOT NULL)"


async def add_to_tally(uow: UnitOfWork, envelope: EventEnvelope) -> None:
    await uow.conn.execute(
        sa.text(
            "INSERT INTO tally VALUES (:s, :n) "
            "ON CONFLICT (stream_id) DO UPDATE SET total = tally.total + EXCLUDED.total"
        ),
        {"s": envelope.aggregate_id, "n": envelope.data["n"]},
    )


async def tally(engine: AsyncEngine, stream: str) -> int | None:
    async with engine.connect() as conn:
        value = await conn.scalar(sa.text("SELECT total FROM tally WHERE stream_id = :s"), {"s": stream})
    return None if value is None else int(value)


STAFF = {"Authorization": "Bearer local-staff-token"}


@pytest.fixture
def env(database_url: str, kafka: str) -> dict[str, str]:
    run = uuid.uuid4().hex[:10]
    return {
        "MEMBERSHIP_DATABASE_URL": database_url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka,
        "MEMBERSHIP_TOPIC": f"ops.{run}.membership.events",
        "MEMBERSHIP_CLAIMS_TOPIC": f"ops.{run}.claims.events",
        "MEMBERSHIP_ACTIVITIES_TOPIC": f"ops.{run}.activities.events",
        "MEMBERSHIP_MEDIATION_TOPIC": f"ops.{run}.mediation.events",
    }


#: The service's real group name is shared by every test (and engineer) on this broker: the
#: tests give the runtime's one subscription a group of its own.
GROUP = f"ops-test.{uuid.uuid4().hex[:8]}.claims"


def _runtime(env: dict[str, str]) -> ServiceRuntime:
    runtime = build_runtime(MembershipSettings(**env))  # type: ignore[arg-type]
    # The claims.events consumer only: these tests are about one upstream topic and its DLQ.
    runtime.subscriptions[:] = [s for s in runtime.subscriptions if s.consumer.name == "claims"]
    [subscription] = runtime.subscriptions
    subscription.group_id = GROUP
    return runtime


async def _ops(env: dict[str, str], *argv: str) -> tuple[int, Any]:
    out = io.StringIO()
    code = await ops.run(_runtime(env), [*argv, "--json"], out)
    return code, json.loads(out.getvalue())


@pytest.fixture
def migrated(env: dict[str, str]) -> dict[str, str]:
    """The database migrated by the real command line: `python -m services.membership ops migrate`."""
    done = subprocess.run(
        [sys.executable, "-m", "services.membership", "ops", "migrate", "--json"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"revision": "0010"}  # head
    return env


async def test_outbox_and_stream_show_an_unpublished_event(migrated: dict[str, str]) -> None:
    app = create_app(MembershipSettings(**migrated))  # type: ignore[arg-type]
    # No lifespan: no relay, so the event stays in the outbox.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url="http://m") as http:
        r = await http.post("/v1/unions", json={"name": "市总工会", "level": "municipal"}, headers=STAFF)
        assert r.status_code == 201, r.text
        union_id = r.json()["union_id"]
    await app.state.runtime.engine.dispose()

    code, outbox = await _ops(migrated, "outbox")
    assert code == 0 and outbox["depth"] == 1 and outbox["oldest_age_seconds"] >= 0

    code, events = await _ops(migrated, "stream", union_id)
    assert code == 0 and [e["event_type"] for e in events] == ["UnionRegistered"]
    assert events[0]["published"] is False and "data" not in events[0]
    code, with_data = await _ops(migrated, "stream", union_id, "--data")
    assert with_data[0]["data"]["name"] == "市总工会"
    code, _ = await _ops(migrated, "stream", str(uuid.uuid4()))
    assert code == 1


async def test_lag_per_group_and_partition(migrated: dict[str, str], kafka: str) -> None:
    upstream = migrated["MEMBERSHIP_CLAIMS_TOPIC"]
    await ensure_topics(kafka, [upstream], partitions=3)
    await publish(kafka, upstream, [envelope("s", v, v) for v in (1, 2, 3)])  # one key: one partition
    code, lags = await _ops(migrated, "lag")
    assert code == 0
    assert {(x["group"], x["topic"]) for x in lags} == {(GROUP, upstream)}
    assert sorted(x["lag"] for x in lags) == [0, 0, 3] and all(x["committed"] is None for x in lags)

    # A group that read everything, reset to the earliest offsets: it will read it all again.
    code, latest = await _ops(migrated, "reset-group", GROUP, "--to", "latest")
    assert code == 0 and sorted(latest["offsets"].values()) == [0, 0, 3]
    code, lags = await _ops(migrated, "lag")
    assert sorted(x["lag"] for x in lags) == [0, 0, 0] and sorted(x["committed"] for x in lags) == [0, 0, 3]
    code, earliest = await _ops(migrated, "reset-group", GROUP)
    assert code == 0 and set(earliest["offsets"].values()) == {0}
    code, lags = await _ops(migrated, "lag")
    assert sorted(x["lag"] for x in lags) == [0, 0, 3]

    # Not under a running consumer: refused.
    member = AIOKafkaConsumer(upstream, bootstrap_servers=kafka, group_id=GROUP, enable_auto_commit=False)
    await member.start()
    try:

        async def joined() -> bool:
            await member.getmany(timeout_ms=100)
            code, _ = await _ops(migrated, "reset-group", GROUP)
            return code == 1

        await eventually(joined, timeout=30, interval=0.5)
    finally:
        await member.stop()


async def test_dead_letters_list_show_and_replay_once(migrated: dict[str, str], kafka: str) -> None:
    """A reaction fails for good, the message is dead-lettered; once the cause is fixed, one
    replay applies it; a second replay changes nothing (the inbox dedupes by event_id)."""
    upstream = migrated["MEMBERSHIP_CLAIMS_TOPIC"]
    await ensure_topics(kafka, [upstream, dlq_topic(upstream)], partitions=1)
    runtime = _runtime(migrated)
    engine = runtime.engine
    async with engine.begin() as conn:
        await conn.execute(sa.text(TALLY_DDL))
    broken = {"yes": True}

    async def sometimes(uow: UnitOfWork, env: Any) -> None:
        if broken["yes"]:
            raise LookupError("the member is not known here yet")
        await add_to_tally(uow, env)

    consumer = InboxConsumer("tally", engine, EventStore("downstream", registry), {"Counted": sometimes})
    loop = KafkaConsumerLoop(
        consumer, kafka, upstream, f"g-{uuid.uuid4()}", max_attempts=1, retry_backoff=0.01
    )
    event = envelope("d", 1, 5)
    await publish(kafka, upstream, [event])
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:

        async def dead_lettered() -> Any:
            code, rows = await _ops(migrated, "dlq", "list")
            return rows if code == 0 and rows else None

        [row] = await eventually(dead_lettered, timeout=30)
        assert row["event_id"] == str(event.event_id) and row["consumer"] == "tally"
        assert "LookupError" in row["error"] and row["original"] == f"{upstream}[0]@0"

        code, shown = await _ops(migrated, "dlq", "show", row["position"])
        assert code == 0 and shown["envelope"]["event_id"] == str(event.event_id) and "data" not in shown
        code, shown = await _ops(migrated, "dlq", "show", row["position"], "--data")
        assert shown["data"] == {"n": 5}
        assert (await _ops(migrated, "dlq", "show", "0:999"))[0] == 1

        broken["yes"] = False  # the cause is fixed
        code, replayed = await _ops(migrated, "dlq", "replay", row["position"])
        assert code == 0 and replayed == {"replayed": [row["position"]]}

        async def applied() -> bool:
            return await tally(engine, "d") == 5

        await eventually(applied, timeout=30)
        duplicates = {"consumer": "tally", "outcome": "duplicate"}
        before = REGISTRY.get_sample_value("consumer_messages_total", duplicates) or 0
        code, _ = await _ops(migrated, "dlq", "replay", "--all")  # again: delivered, deduplicated
        assert code == 0

        async def deduplicated() -> bool:
            return (REGISTRY.get_sample_value("consumer_messages_total", duplicates) or 0) == before + 1

        await eventually(deduplicated, timeout=30)
        assert await tally(engine, "d") == 5
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await engine.dispose()


def test_claims_has_the_same_ops_command() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "services.claims", "ops", "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "python -m services.claims ops" in done.stdout
    for command in ("outbox", "lag", "dlq", "stream", "migrate"):
        assert command in done.stdout
