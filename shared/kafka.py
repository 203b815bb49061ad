"""Kafka plumbing shared by the relay, the consumers, the tests and the benchmarks."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from prometheus_client import Gauge

log = logging.getLogger(__name__)

TOPICS_MISSING = Gauge(
    "kafka_topics_missing", "1 while this process waits for a topic it may not create", ["topic"]
)
#: Topics some caller in this process is waiting for (production mode): readiness reports them.
_awaited: dict[str, int] = {}


def reliable_producer(bootstrap_servers: str, **overrides: object) -> AIOKafkaProducer:
    """acks=all + idempotence: no loss on broker failover, no duplicates from producer retries,
    and order per partition kept across retries."""
    config: dict[str, object] = {
        "bootstrap_servers": bootstrap_servers,
        "acks": "all",
        "enable_idempotence": True,
        "linger_ms": 5,
        "request_timeout_ms": 10_000,
        "max_batch_size": 256 * 1024,
    }
    config.update(overrides)
    return AIOKafkaProducer(**config)


#: Event topics are kept for good: a consumer group reset to offset 0 (a projection rebuild, a new
#: integrator) must find every stream from its first version, or it waits for a deleted one.
EVENTS_RETENTION_MS = -1
#: Dead letters are kept long enough to inspect and replay them.
DLQ_RETENTION_MS = 30 * 24 * 3600 * 1000


def topic_retention_ms(topic: str) -> int:
    """The retention a topic is created with (as deploy/k8s/base/kafka-topics.yaml declares it)."""
    return DLQ_RETENTION_MS if topic.endswith(".dlq") else EVENTS_RETENTION_MS


async def ensure_topics(
    bootstrap_servers: str, topics: Iterable[str], *, partitions: int = 3, replication: int = 1
) -> None:
    """Create topics that do not exist yet (production clusters may pre-create them instead)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [t for t in dict.fromkeys(topics) if t not in existing]
        if not missing:
            return
        with contextlib.suppress(TopicAlreadyExistsError):
            await admin.create_topics(
                [
                    NewTopic(
                        t,
                        num_partitions=partitions,
                        replication_factor=replication,
                        topic_configs={"retention.ms": str(topic_retention_ms(t))},
                    )
                    for t in missing
                ]
            )
        log.info("created topics %s", missing)
    finally:
        await admin.close()


async def missing_topics(bootstrap_servers: str, topics: Iterable[str]) -> list[str]:
    """Which of ``topics`` the cluster does not have (admin metadata; nothing is created)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [t for t in dict.fromkeys(topics) if t not in existing]


def awaited_topics() -> list[str]:
    """Topics this process is waiting for right now (for /readyz)."""
    return sorted(t for t, waiters in _awaited.items() if waiters > 0)


async def ensure_or_await_topics(
    bootstrap_servers: str,
    topics: Iterable[str],
    *,
    create: bool,
    stop: asyncio.Event | None = None,
    poll_interval: float = 2.0,
    log_every: float = 30.0,
) -> None:
    """Make sure ``topics`` exist before a service produces to or subscribes to them.

    ``create=True`` (development): create the missing ones, as ``ensure_topics``.
    ``create=False`` (production): never create; a topic created here would get this client's
    partitions and replication factor (the Topic Operator cannot change replication afterwards,
    and with ``min.insync.replicas=2`` a replication factor of 1 refuses every ``acks=all``
    send). Instead wait until the declared KafkaTopic resources exist, visibly: a warning naming the
    missing topics (again every ``log_every`` seconds), the ``kafka_topics_missing`` gauge, and
    ``awaited_topics()`` in /readyz. Once ``stop`` is set it raises ``CancelledError``, as if
    the caller had been cancelled, so no caller goes on to start a producer or consumer during
    shutdown. Admin errors (Kafka unreachable) propagate: the callers already retry those.
    """
    wanted = list(dict.fromkeys(topics))
    if create:
        await ensure_topics(bootstrap_servers, wanted)
        return
    missing = await missing_topics(bootstrap_servers, wanted)
    if not missing:
        return
    for t in missing:
        _awaited[t] = _awaited.get(t, 0) + 1
        TOPICS_MISSING.labels(t).set(1)
    started = last_log = time.monotonic()
    log.warning(
        "production mode: waiting for Kafka topics %s to be created (by the Topic Operator / "
        "KafkaTopic resources); a service never creates topics in production",
        missing,
    )
    try:
        while missing:
            if stop is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=poll_interval)
                if stop.is_set():
                    raise asyncio.CancelledError("stopped while waiting for topics")
            else:
                await asyncio.sleep(poll_interval)
            now_missing = await missing_topics(bootstrap_servers, wanted)
            for t in set(missing) - set(now_missing):
                _release(t)
            missing = now_missing
            if missing and time.monotonic() - last_log >= log_every:
                last_log = time.monotonic()
                log.warning(
                    "production mode: still waiting for Kafka topics %s (%.0fs)", missing, last_log - started
                )
        log.info("Kafka topics %s exist; going on after %.1fs", wanted, time.monotonic() - started)
    finally:
        for t in missing:
            _release(t)


def _release(topic: str) -> None:
    _awaited[topic] -= 1
    if _awaited[topic] <= 0:
        del _awaited[topic]
        TOPICS_MISSING.labels(topic).set(0)


def dlq_topic(topic: str) -> str:
    return f"{topic}.dlq"
