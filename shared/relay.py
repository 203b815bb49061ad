"""The outbox relay: moves committed events from the service's outbox to its Kafka topic.

Guarantees, and what gives them:
- nothing committed is skipped: the relay takes whatever is *in the outbox*, not "position >
  last seen", so an event that commits late is simply picked up on the next pass;
- no loss on a crash: an outbox row is deleted only after Kafka acknowledged it (acks=all), so a
  kill between publishing and deleting republishes (a duplicate, which consumers dedupe);
- order per aggregate: one leader per topic (a PostgreSQL advisory lock), rows sent in position
  order through an idempotent producer, and only the acknowledged *prefix* of a batch deleted;
- Kafka down: the batch is retried with capped exponential backoff; writers never notice;
- prompt: appends NOTIFY on commit; the relay also polls as a safety net.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.eventstore import EventStore
from shared.kafka import ensure_or_await_topics, reliable_producer
from shared.locks import LockSpace
from shared.tables import OUTBOX_CHANNEL

log = logging.getLogger(__name__)

PUBLISHED = Counter("relay_events_published_total", "Events confirmed on Kafka", ["topic"])
FAILURES = Counter("relay_publish_failures_total", "Failed publish attempts", ["topic"])
LEADER = Gauge("relay_is_leader", "1 while this process holds the relay lock", ["topic"])


#: The oldest queued events with their envelope JSON (shared/envelope.py's fields) built by the
#: database. The unit tests of the contract read these bytes back through ``EventEnvelope``.
_PENDING = """
SELECT e.position, e.stream_id, e.event_type, e.event_id::text AS event_id, e.schema_version,
       e.correlation_id::text AS correlation_id,
       json_build_object(
           'event_id', e.event_id, 'event_type', e.event_type, 'schema_version', e.schema_version,
           'aggregate_type', e.stream_type, 'aggregate_id', e.stream_id, 'aggregate_version', e.version,
           'occurred_at', to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'producer', $1::text, 'correlation_id', e.correlation_id, 'causation_id', e.causation_id,
           'data', e.data
       )::text AS value
FROM outbox o JOIN events e ON e.position = o.position
ORDER BY o.position
LIMIT $2
"""


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        store: EventStore,
        topic: str,
        bootstrap_servers: str,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
        max_backoff: float = 10.0,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
        create_topics: bool = True,
    ) -> None:
        self.engine = engine
        self.store = store
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self._producer_factory = producer_factory or (lambda: reliable_producer(bootstrap_servers))
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        #: False in production mode: wait for the topic instead of creating it.
        self.create_topics = create_topics

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set. Every failure is retried; only cancellation ends it early."""
        backoff = 0.1
        while not stop.is_set():
            try:
                async with self._leadership(stop) as conn:
                    if conn is None:
                        return
                    await ensure_or_await_topics(
                        self.bootstrap_servers, [self.topic], create=self.create_topics, stop=stop
                    )
                    producer = self._producer_factory()
                    await producer.start()
                    try:
                        self.ready.set()
                        backoff = 0.1
                        await self._pump(producer, conn, stop)
                    finally:
                        await producer.stop()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.ready.clear()  # /readyz reports Kafka as unreachable until we are back
                FAILURES.labels(self.topic).inc()
                log.warning("relay for %s: %s; retrying in %.1fs", self.topic, exc, backoff)
                await _sleep_or_stop(stop, backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)

    async def _pump(self, producer: AIOKafkaProducer, conn: Any, stop: asyncio.Event) -> None:
        while not stop.is_set():
            published = await self.publish_batch(producer, conn)
            if published < self.batch_size:
                self._wake.clear()
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self.poll_interval,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()

    async def publish_batch(self, producer: AIOKafkaProducer, conn: Any) -> int:
        """Publish the oldest outbox rows once; delete those Kafka confirmed. Returns how many.

        ``conn`` is the leader's own asyncpg session: if it dies, the lock is gone, and so is this
        call. PostgreSQL renders each envelope's JSON itself (``_PENDING``): the relay only moves
        bytes, which is what keeps it near the speed of a bare producer.
        """
        rows = await conn.fetch(_PENDING, self.store.producer, self.batch_size)
        if not rows:
            return 0
        futures: list[asyncio.Future[object]] = []
        failure: BaseException | None = None
        for row in rows:
            try:
                futures.append(
                    await producer.send(
                        self.topic,
                        value=row["value"].encode(),
                        key=row["stream_id"].encode(),
                        headers=[
                            ("event_type", row["event_type"].encode()),
                            ("event_id", row["event_id"].encode()),
                            ("schema_version", str(row["schema_version"]).encode()),
                            ("correlation_id", row["correlation_id"].encode()),
                        ],
                    )
                )
            except Exception as exc:
                failure = exc
                break
        results = await asyncio.gather(*futures, return_exceptions=True)
        confirmed: list[int] = []
        for row, result in zip(rows, results, strict=False):
            if isinstance(result, BaseException):
                failure = failure or result
                break
            confirmed.append(row["position"])
        if confirmed:
            await conn.execute("DELETE FROM outbox WHERE position = ANY($1::bigint[])", confirmed)
            PUBLISHED.labels(self.topic).inc(len(confirmed))
        if failure is not None:
            raise failure
        return len(confirmed)

    @contextlib.asynccontextmanager
    async def _leadership(self, stop: asyncio.Event) -> AsyncIterator[Any]:
        """Hold a session advisory lock for the topic, and LISTEN on the same connection.

        Yields that (asyncpg) connection, or None if stopped before becoming leader."""
        async with self.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            while not stop.is_set():
                got = await raw.fetchval(
                    "SELECT pg_try_advisory_lock($1, hashtext($2))", int(LockSpace.RELAY_LEADER), self.topic
                )
                if got:
                    break
                await _sleep_or_stop(stop, self.poll_interval)
            else:
                yield None
                return

            def on_notify(*_: object) -> None:
                self._wake.set()

            await raw.add_listener(OUTBOX_CHANNEL, on_notify)
            LEADER.labels(self.topic).set(1)
            try:
                yield raw
            finally:
                LEADER.labels(self.topic).set(0)
                with contextlib.suppress(Exception):
                    await raw.remove_listener(OUTBOX_CHANNEL, on_notify)
                try:
                    await raw.execute(
                        "SELECT pg_advisory_unlock($1, hashtext($2))", int(LockSpace.RELAY_LEADER), self.topic
                    )
                except Exception:
                    # Never hand a connection that may still hold the lock back to the pool.
                    await conn.invalidate()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
