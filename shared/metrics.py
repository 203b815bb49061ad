"""What operators alert on, computed where the truth is: Kafka offsets and the outbox table.

- ``consumer_lag{group,topic,partition}``: the partition's end offset minus the group's committed
  offset (read with the admin client, so it is right even while the consumer is stuck or down);
- ``outbox_depth`` and ``outbox_oldest_event_age_seconds``: committed events Kafka has not
  acknowledged yet, and how long the oldest has waited (the relay is stuck when this grows);
- ``dlq_messages{topic}``: messages kept in each dead-letter topic this service writes to;
- ``http_request_duration_seconds{method,route,status}``: by route *template* (``/v1/members/
  {member_id}``), never the raw path, so ids do not explode the label set; a method outside
  the standard ones is ``_OTHER`` (``shared.tracing.method_of``), for the same reason.

The database and Kafka figures are refreshed when /metrics is scraped (Kafka at most every
``kafka_interval`` seconds, each refresh bounded by a timeout), and every replica reports the same
values: aggregate with ``max``, not ``sum``. The same functions back ``python -m services.X ops``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from fastapi import FastAPI
from prometheus_client import Gauge, Histogram
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.tracing import method_of

log = logging.getLogger(__name__)

HTTP_LATENCY = Histogram(
    "http_request_duration_seconds",
    "HTTP requests by route template and status",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
CONSUMER_LAG = Gauge(
    "consumer_lag", "Messages not yet committed by the group", ["group", "topic", "partition"]
)
OUTBOX_DEPTH = Gauge("outbox_depth", "Committed events not yet acknowledged by Kafka")
OUTBOX_AGE = Gauge(
    "outbox_oldest_event_age_seconds", "Age of the oldest event still in the outbox (0 when empty)"
)
DLQ_MESSAGES = Gauge("dlq_messages", "Messages retained in a dead-letter topic", ["topic"])
SCRAPE_ERRORS = Gauge("ops_metrics_refresh_failed", "1 when the last refresh of a source failed", ["source"])


# --- the figures themselves (also used by shared/ops.py) ---------------------------------------


@dataclass(frozen=True)
class OutboxStats:
    depth: int
    oldest_position: int | None
    oldest_age_seconds: float | None


async def outbox_stats(engine: AsyncEngine) -> OutboxStats:
    """Depth of the outbox and the age of its oldest event (by the event's own ``occurred_at``)."""
    async with engine.connect() as conn:
        row = (
            await conn.execute(
                sa.text(
                    "SELECT (SELECT count(*) FROM outbox) AS depth, o.position,"
                    " extract(epoch FROM now() - e.occurred_at) AS age"
                    " FROM (SELECT min(position) AS position FROM outbox) o"
                    " LEFT JOIN events e ON e.position = o.position"
                )
            )
        ).one()
    return OutboxStats(int(row.depth), row.position, None if row.age is None else float(row.age))


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    committed: int | None  # None: the group never committed on this partition
    end: int
    lag: int


async def _partitions(admin: AIOKafkaAdminClient, topics: Sequence[str]) -> list[TopicPartition]:
    described = await admin.describe_topics(list(topics))
    return sorted(
        TopicPartition(t["topic"], p["partition"])
        for t in described
        if not t.get("error_code")
        for p in t["partitions"]
    )


async def topic_partitions(bootstrap_servers: str, topics: Sequence[str]) -> list[TopicPartition]:
    """The partitions of ``topics`` that exist (a missing topic has none)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        return await _partitions(admin, topics)
    finally:
        await admin.close()


async def _offsets(
    bootstrap_servers: str, partitions: list[TopicPartition]
) -> tuple[dict[TopicPartition, int], dict[TopicPartition, int]]:
    """(beginning, end) offsets of ``partitions``."""
    if not partitions:
        return {}, {}
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, enable_auto_commit=False)
    await consumer.start()
    try:
        return await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
    finally:
        await consumer.stop()


async def consumer_lag(bootstrap_servers: str, groups: Mapping[str, Sequence[str]]) -> list[PartitionLag]:
    """Lag of each group on each partition of the topics it reads."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        topics = sorted({t for ts in groups.values() for t in ts})
        partitions = await _partitions(admin, topics)
        beginning, end = await _offsets(bootstrap_servers, partitions)
        out = []
        for group, group_topics in sorted(groups.items()):
            mine = [tp for tp in partitions if tp.topic in group_topics]
            committed = await admin.list_consumer_group_offsets(group, partitions=mine) if mine else {}
            for tp in mine:
                meta = committed.get(tp)
                offset = meta.offset if meta is not None and meta.offset >= 0 else None
                # Never committed: the group starts from the earliest retained message.
                start = offset if offset is not None else beginning[tp]
                out.append(
                    PartitionLag(group, tp.topic, tp.partition, offset, end[tp], max(end[tp] - start, 0))
                )
        return out
    finally:
        await admin.close()


async def topic_sizes(bootstrap_servers: str, topics: Iterable[str]) -> dict[str, int]:
    """Messages retained per topic (end minus beginning offsets); 0 for a topic that does not exist."""
    wanted = list(dict.fromkeys(topics))
    partitions = await topic_partitions(bootstrap_servers, wanted)
    beginning, end = await _offsets(bootstrap_servers, partitions)
    sizes = dict.fromkeys(wanted, 0)
    for tp in partitions:
        sizes[tp.topic] += end[tp] - beginning[tp]
    return sizes


# --- exporting them ------------------------------------------------------------------------------


class ServiceMetrics:
    """Refreshes the gauges above for one service when /metrics is scraped."""

    def __init__(
        self,
        engine: AsyncEngine,
        bootstrap_servers: str,
        *,
        kafka_interval: float = 15.0,
        timeout: float = 4.0,  # per source: database + Kafka stay under Prometheus' 10 s default
    ) -> None:
        self.engine = engine
        self.bootstrap_servers = bootstrap_servers
        self.kafka_interval = kafka_interval
        self.timeout = timeout
        self._kafka_at = float("-inf")
        self._lock = asyncio.Lock()

    async def refresh(self, groups: Mapping[str, Sequence[str]], dlq_topics: Sequence[str]) -> None:
        """Never raises and never takes longer than about ``timeout`` per source: a scrape that
        fails still returns the process's own metrics (and ``ops_metrics_refresh_failed``)."""
        async with self._lock:
            await self._guarded("database", self._refresh_outbox())
            if time.monotonic() - self._kafka_at >= self.kafka_interval:
                self._kafka_at = time.monotonic()
                await self._guarded("kafka", self._refresh_kafka(groups, dlq_topics))

    async def _guarded(self, source: str, work: Awaitable[None]) -> None:
        try:
            await asyncio.wait_for(work, timeout=self.timeout)
            SCRAPE_ERRORS.labels(source).set(0)
        except Exception as exc:
            SCRAPE_ERRORS.labels(source).set(1)
            log.warning("metrics: %s figures unavailable (%s)", source, type(exc).__name__)

    async def _refresh_outbox(self) -> None:
        stats = await outbox_stats(self.engine)
        OUTBOX_DEPTH.set(stats.depth)
        OUTBOX_AGE.set(stats.oldest_age_seconds or 0.0)

    async def _refresh_kafka(self, groups: Mapping[str, Sequence[str]], dlq_topics: Sequence[str]) -> None:
        if groups:
            for lag in await consumer_lag(self.bootstrap_servers, groups):
                CONSUMER_LAG.labels(lag.group, lag.topic, str(lag.partition)).set(lag.lag)
        if dlq_topics:
            for topic, size in (await topic_sizes(self.bootstrap_servers, dlq_topics)).items():
                DLQ_MESSAGES.labels(topic).set(size)


def instrument_http(app: FastAPI) -> None:
    """Time every request, labelled by its route template (``unmatched`` for an answer given
    before any route matched: a 404, and the edge's refusals, told apart by their status).
    Added outside the edge (shared/runtime.py), so the status is the one the client received."""
    app.add_middleware(MetricsMiddleware)


class MetricsMiddleware:
    """Pure ASGI, not ``@app.middleware("http")``: Starlette's BaseHTTPMiddleware runs the app in
    a task of its own and streams the answer through a memory channel, which cost a tenth of the
    intake's throughput per layer (bench/intake.py). The status is the one the answer started
    with: outside the edge, that is what the client got (its 503 for a transient error, its 413,
    401 or 422 refusals); an exception that still escapes counts as 500."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def timed_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        finally:
            with contextlib.suppress(Exception):
                # The router filled in the route (and FastAPI its context) on this very scope.
                HTTP_LATENCY.labels(method_of(scope), route_template(scope), str(status)).observe(
                    time.perf_counter() - started
                )


def route_template(scope: Mapping[str, Any]) -> str:
    """The matched route's template with its router prefix (``/v1/members/{member_id}``).

    FastAPI keeps the full template in its effective route context; ``scope["route"].path`` lacks
    the ``include_router`` prefix, so without that context the path parameters' values are put
    back into template form segment by segment. ``unmatched`` when no route matched."""
    context = (scope.get("fastapi") or {}).get("effective_route_context")
    if isinstance(full := getattr(context, "path", None), str):
        return full
    if scope.get("route") is None:
        return "unmatched"
    names = {str(v): k for k, v in (scope.get("path_params") or {}).items()}
    return "/".join(
        f"{{{names[seg]}}}" if seg in names else seg for seg in str(scope.get("path", "")).split("/")
    )
