"""The outbox relay: moves committed events from the service's outbox to its Kafka topic.

Guarantees, and what gives them:
- nothing committed is skipped: the relay takes whatever is *in the outbox*, not "position >
  last seen", so an event that commits late is simply picked up on the next pass;
- no loss on a crash: an outbox row is deleted only after Kafka acknowledged it (acks=all), so a
  kill between publishing and deleting republishes (a duplicate, which consumers dedupe);
- order per aggregate: one leader per topic (a PostgreSQL advisory lock), rows sent in position
  order through an idempotent producer, and only the acknowledged *prefix* of a batch deleted;
- Kafka down: the batch is retried with capped exponential backoff; writers never notice;
- prompt: appends NOTIFY on commit; the relay also polls as a safety net;
- a record Kafka refuses for good (too large, invalid) holds back only its own aggregate: the
  stream goes into ``outbox_held`` and its rows are skipped until an operator releases or drops
  it (``python -m services.<name> ops held ...``), so every other aggregate keeps flowing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import (
    CorruptRecordException,
    InvalidTimestampError,
    MessageSizeTooLargeError,
    RecordListTooLargeError,
    RecordTooLargeError,
)
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
HELD_BACK = Gauge(
    "relay_held_back_events",
    "Outbox events not published because Kafka refused an event of their aggregate (alert if > 0)",
    ["topic"],
)
REFUSED = Counter(
    "relay_records_refused_total", "Events Kafka refused permanently (their aggregate is held)", ["topic"]
)

#: Kafka will refuse these records however often they are sent; everything else (timeouts, a
#: broker away, no leader) is transient and retried with backoff as before.
PERMANENT_ERRORS: tuple[type[BaseException], ...] = (
    MessageSizeTooLargeError,
    RecordTooLargeError,
    RecordListTooLargeError,
    CorruptRecordException,
    InvalidTimestampError,
)
#: After a permanent delivery error, this many rows are sent one at a time to find the culprit.
ISOLATION_ROWS = 100
#: How often the leader recounts held-back rows for the gauge (an operator may release them).
HELD_REFRESH_SECONDS = 15.0


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PERMANENT_ERRORS)


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
WHERE NOT EXISTS (SELECT 1 FROM outbox_held h WHERE h.stream_id = e.stream_id)
ORDER BY o.position
LIMIT $2
"""

_HOLD = """
INSERT INTO outbox_held (stream_id, position, event_type, value_bytes, error)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (stream_id) DO NOTHING
"""

_HELD_COUNT = """
SELECT count(*) FROM outbox o JOIN events e ON e.position = o.position
WHERE EXISTS (SELECT 1 FROM outbox_held h WHERE h.stream_id = e.stream_id)
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
        self._held_counted_at = float("-inf")
        self._isolating = False  # set by a permanent delivery error: find the record it was
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
            # Cleared *before* reading the outbox: a NOTIFY that arrives while this batch is being
            # published sets it again, and the wait below returns at once instead of sleeping a
            # whole poll interval with a committed event waiting.
            self._wake.clear()
            published = await self.publish_batch(producer, conn)
            if published < self.batch_size:
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
        """Publish the oldest outbox rows once; delete those Kafka confirmed. Returns how many rows
        it is done with (confirmed, or held back with their aggregate).

        ``conn`` is the leader's own asyncpg session: if it dies, the lock is gone, and so is this
        call. PostgreSQL renders each envelope's JSON itself (``_PENDING``): the relay only moves
        bytes, which is what keeps it near the speed of a bare producer.

        A record ``send()`` refuses for good (``is_permanent``: over the producer's size limit)
        holds back its stream at once: its later rows in this batch are not sent (its order is
        kept), and ``_PENDING`` skips it from then on. A failure on a delivery future ends the
        batch as before: the confirmed prefix is deleted, the error raised, the rest retried with
        backoff. The broker refuses a whole record batch, not one record, so a permanent error
        there only says "one of these": the next pass isolates, one row at a time.
        """
        rows = await conn.fetch(_PENDING, self.store.producer, self.batch_size)
        if not rows:
            await self._count_held(conn)
            return 0
        if self._isolating:
            return await self._publish_one_by_one(conn, producer, rows[:ISOLATION_ROWS])
        futures: list[asyncio.Future[object]] = []
        sent: list[Any] = []
        held: dict[str, tuple[Any, BaseException]] = {}
        skipped = 0
        failure: BaseException | None = None
        for row in rows:
            if row["stream_id"] in held:
                skipped += 1
                continue
            try:
                futures.append(await self._send(producer, row))
                sent.append(row)
            except Exception as exc:
                if is_permanent(exc):
                    held[row["stream_id"]] = (row, exc)
                    continue
                failure = exc
                break
        results = await asyncio.gather(*futures, return_exceptions=True)
        confirmed: list[int] = []
        for row, result in zip(sent, results, strict=True):
            if isinstance(result, BaseException):
                if is_permanent(result):
                    self._isolating = True
                failure = failure or result
                break
            confirmed.append(row["position"])
        await self._settle(conn, confirmed, held)
        if failure is not None:
            raise failure
        return len(confirmed) + len(held) + skipped

    async def _publish_one_by_one(self, conn: Any, producer: AIOKafkaProducer, rows: list[Any]) -> int:
        """Find the record the broker refuses: each row alone, awaited before the next (slow, so
        only for the few rows after a permanent delivery error; then back to batches)."""
        confirmed: list[int] = []
        held: dict[str, tuple[Any, BaseException]] = {}
        skipped = 0
        failure: BaseException | None = None
        for row in rows:
            if row["stream_id"] in held:
                skipped += 1
                continue
            try:
                await (await self._send(producer, row))
            except Exception as exc:
                if is_permanent(exc):
                    held[row["stream_id"]] = (row, exc)
                    continue
                failure = exc
                break
            confirmed.append(row["position"])
        await self._settle(conn, confirmed, held)
        if failure is not None:
            raise failure
        self._isolating = False
        return len(confirmed) + len(held) + skipped

    async def _send(self, producer: AIOKafkaProducer, row: Any) -> asyncio.Future[object]:
        future: asyncio.Future[object] = await producer.send(
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
        return future

    async def _settle(
        self, conn: Any, confirmed: list[int], held: dict[str, tuple[Any, BaseException]]
    ) -> None:
        if confirmed:
            await conn.execute("DELETE FROM outbox WHERE position = ANY($1::bigint[])", confirmed)
            PUBLISHED.labels(self.topic).inc(len(confirmed))
        if held:
            await self._hold(conn, held)

    async def _hold(self, conn: Any, held: dict[str, tuple[Any, BaseException]]) -> None:
        """Record held streams, count them for the gauge and log an alert (no payload: only ids,
        the event type, its size and the exception type)."""
        for stream_id, (row, exc) in held.items():
            size = len(row["value"].encode())
            await conn.execute(_HOLD, stream_id, row["position"], row["event_type"], size, type(exc).__name__)
            REFUSED.labels(self.topic).inc()
            log.error(
                "ALERT relay for %s: Kafka refused event at position %d (%s, %d bytes, %s) for good; "
                "holding back aggregate %s until `ops held release` or `ops held drop`",
                self.topic,
                row["position"],
                row["event_type"],
                size,
                type(exc).__name__,
                stream_id,
            )
        await self._count_held(conn, force=True)

    async def _count_held(self, conn: Any, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._held_counted_at >= HELD_REFRESH_SECONDS:
            self._held_counted_at = now
            HELD_BACK.labels(self.topic).set(int(await conn.fetchval(_HELD_COUNT)))

    @contextlib.asynccontextmanager
    async def _leadership(self, stop: asyncio.Event) -> AsyncIterator[Any]:
        """Hold a session advisory lock for the topic, and LISTEN on the same connection.

        Yields that (asyncpg) connection, or None if stopped before becoming leader. From the
        first lock attempt on, any way out (an error, a cancellation, even one that lands while
        ``pg_try_advisory_lock`` is in flight) either unlocks or discards the connection: a pooled
        connection that still held the lock would make every later relay wait forever."""

        def on_notify(*_: object) -> None:
            self._wake.set()

        async with self.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            clean = False
            try:
                while not stop.is_set():
                    got = await raw.fetchval(
                        "SELECT pg_try_advisory_lock($1, hashtext($2))",
                        int(LockSpace.RELAY_LEADER),
                        self.topic,
                    )
                    if got:
                        break
                    await _sleep_or_stop(stop, self.poll_interval)
                else:
                    clean = True
                    yield None
                    return
                await raw.add_listener(OUTBOX_CHANNEL, on_notify)
                LEADER.labels(self.topic).set(1)
                try:
                    yield raw
                finally:
                    LEADER.labels(self.topic).set(0)
                    with contextlib.suppress(Exception):
                        await raw.remove_listener(OUTBOX_CHANNEL, on_notify)
                await raw.execute(
                    "SELECT pg_advisory_unlock($1, hashtext($2))", int(LockSpace.RELAY_LEADER), self.topic
                )
                clean = True
            finally:
                if not clean:
                    # Never hand a connection that may still hold the lock back to the pool.
                    with contextlib.suppress(Exception):
                        await conn.invalidate()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
