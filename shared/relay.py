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

import sqlalchemy as sa
from aiokafka import AIOKafkaProducer
from prometheus_client import Counter, Gauge
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.eventstore import EventStore
from shared.kafka import ensure_topics, reliable_producer
from shared.tables import OUTBOX_CHANNEL, events, outbox

log = logging.getLogger(__name__)

PUBLISHED = Counter("relay_events_published_total", "Events confirmed on Kafka", ["topic"])
FAILURES = Counter("relay_publish_failures_total", "Failed publish attempts", ["topic"])
LEADER = Gauge("relay_is_leader", "1 while this process holds the relay lock", ["topic"])


class OutboxRelay:
    def __init__(
        self,
        engine: AsyncEngine,
        store: EventStore,
        topic: str,
        bootstrap_servers: str,
        *,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 10.0,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
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

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set. Every failure is retried; only cancellation ends it early."""
        backoff = 0.1
        while not stop.is_set():
            try:
                async with self._leadership(stop) as conn:
                    if conn is None:
                        return
                    await ensure_topics(self.bootstrap_servers, [self.topic])
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

    async def _pump(self, producer: AIOKafkaProducer, conn: AsyncConnection, stop: asyncio.Event) -> None:
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

    async def publish_batch(self, producer: AIOKafkaProducer, conn: AsyncConnection) -> int:
        """Publish the oldest outbox rows once; delete those Kafka confirmed. Returns how many.

        ``conn`` is the leader's own session: if it dies, the lock is gone, and so is this call.
        """
        rows = (
            (
                await conn.execute(
                    sa.select(events)
                    .join(outbox, outbox.c.position == events.c.position)
                    .order_by(events.c.position)
                    .limit(self.batch_size)
                )
            )
            .mappings()
            .all()
        )
        await conn.commit()
        if not rows:
            return 0
        futures: list[asyncio.Future[object]] = []
        failure: BaseException | None = None
        for row in rows:
            envelope = self.store.as_published(row)
            try:
                futures.append(
                    await producer.send(
                        self.topic,
                        value=envelope.to_bytes(),
                        key=envelope.kafka_key(),
                        headers=envelope.kafka_headers(),
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
            await conn.execute(sa.delete(outbox).where(outbox.c.position.in_(confirmed)))
            await conn.commit()
            PUBLISHED.labels(self.topic).inc(len(confirmed))
        if failure is not None:
            raise failure
        return len(confirmed)

    @contextlib.asynccontextmanager
    async def _leadership(self, stop: asyncio.Event) -> AsyncIterator[AsyncConnection | None]:
        """Hold a session advisory lock for the topic, and LISTEN on the same connection.

        Yields that connection (None if stopped before becoming leader)."""
        async with self.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            while not stop.is_set():
                got = await raw.fetchval("SELECT pg_try_advisory_lock(hashtext($1))", self.topic)
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
                yield conn
            finally:
                LEADER.labels(self.topic).set(0)
                with contextlib.suppress(Exception):
                    await raw.remove_listener(OUTBOX_CHANNEL, on_notify)
                    await raw.execute("SELECT pg_advisory_unlock(hashtext($1))", self.topic)


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
