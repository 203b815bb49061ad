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
from collections.abc import AsyncIterator, Callable, Coroutine
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
#: A relay leader that has said nothing to PostgreSQL for this long loses its lock: the server
#: ends its session (``idle_session_timeout``), or a follower does (``_FENCE``). It speaks every
#: lease/4 while alive. Takeover after a leader froze: lease + one follower poll + producer start.
DEFAULT_LEASE_SECONDS = 5.0
#: How often the leader recounts held-back rows for the gauge (an operator may release them).
HELD_REFRESH_SECONDS = 15.0


def relay_headers(row: Any) -> list[tuple[str, bytes]]:
    """The headers of ``EventEnvelope.kafka_headers`` from a ``_PENDING`` row, and the trace
    context stored with the event (``traceparent``, ``tracestate``) when there is one. The relay
    sends the appending span's context as it is, without a span of its own: it only moves bytes,
    and a span per event would cost it a good part of its throughput while tracing is on."""
    headers = [
        ("event_type", row["event_type"].encode()),
        ("event_id", row["event_id"].encode()),
        ("schema_version", str(row["schema_version"]).encode()),
        ("correlation_id", row["correlation_id"].encode()),
    ]
    if row["traceparent"]:
        headers.append(("traceparent", row["traceparent"].encode("latin-1")))
        if row["tracestate"]:
            headers.append(("tracestate", row["tracestate"].encode("latin-1")))
    return headers


def is_permanent(exc: BaseException) -> bool:
    return isinstance(exc, PERMANENT_ERRORS)


#: The oldest queued events with their envelope JSON (shared/envelope.py's fields) built by the
#: database. The unit tests of the contract read these bytes back through ``EventEnvelope``.
#: Its shape leaves one plan: the outbox walked in ``outbox_pkey`` order, and for each row its
#: event looked up by ``events_pkey`` (the ``OFFSET 0`` keeps the lateral subquery from being
#: flattened into a join the planner could turn around: walking ``events`` from position 1 and
#: probing the outbox, fine for a small store, millions of probes for a big one). The relay
#: session's settings (``relay_session_settings``) rule out the sort and the scans around it.
#: ``$3``: positions still in flight, left out (empty: none). The relay reads the next batch while
#: Kafka acknowledges the last one, whose rows are still in the outbox until then.
_PENDING = """
SELECT e.position, e.stream_id, e.event_type, e.event_id::text AS event_id, e.schema_version,
       e.correlation_id::text AS correlation_id,
       e.trace_context->>'traceparent' AS traceparent, e.trace_context->>'tracestate' AS tracestate,
       json_build_object(
           'event_id', e.event_id, 'event_type', e.event_type, 'schema_version', e.schema_version,
           'aggregate_type', e.stream_type, 'aggregate_id', e.stream_id, 'aggregate_version', e.version,
           'occurred_at', to_char(e.occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
           'producer', $1::text, 'correlation_id', e.correlation_id, 'causation_id', e.causation_id,
           'data', e.data
       )::text AS value
FROM outbox o
CROSS JOIN LATERAL (SELECT * FROM events WHERE events.position = o.position OFFSET 0) e
WHERE o.position <> ALL($3::bigint[])
  AND NOT EXISTS (SELECT 1 FROM outbox_held h WHERE h.stream_id = e.stream_id)
ORDER BY o.position
LIMIT $2
"""

_DELETE = "DELETE FROM outbox WHERE position = ANY($1::bigint[])"

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
        lease: float = DEFAULT_LEASE_SECONDS,
        gather: float = 0.0,
    ) -> None:
        self.engine = engine
        self.store = store
        self.topic = topic
        self.bootstrap_servers = bootstrap_servers
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        # No linger: a batch's records are all handed to the producer before the relay awaits
        # their acknowledgements, so they already travel in one request; lingering would only
        # add its milliseconds to every hop.
        self._producer_factory = producer_factory or (
            lambda: reliable_producer(bootstrap_servers, linger_ms=0)
        )
        self._wake = asyncio.Event()
        self.ready = asyncio.Event()
        self._held_counted_at = float("-inf")
        self._isolating = False  # set by a permanent delivery error: find the record it was
        #: The next batch, read while the last one was being acknowledged (``publish_batch``).
        self._ahead: list[Any] | None = None
        #: False in production mode: wait for the topic instead of creating it.
        self.create_topics = create_topics
        #: How long a leader may stay silent before it loses the lock (see ``_leadership``).
        self.lease = lease
        #: After a wake-up, how long to let more commits land before reading the outbox: one
        #: read, one produce request and one delete then carry several transactions' events.
        self.gather = gather

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until ``stop`` is set. Every failure is retried; only cancellation ends it early."""
        backoff = 0.1
        while not stop.is_set():
            try:
                async with self._leadership(stop) as conn:
                    if conn is None:
                        return
                    # The heartbeat runs from the moment the lock is held (waiting for topics or
                    # a producer is no reason to lose it); if it fails, the leadership ends.
                    await _first_of(self._lead(conn, stop), self._heartbeat(conn, stop))
                    backoff = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if self.ready.is_set():
                    backoff = 0.1  # it was leading: a fresh failure, not one more in a row
                self.ready.clear()  # /readyz reports Kafka as unreachable until we are back
                FAILURES.labels(self.topic).inc()
                log.warning("relay for %s: %s; retrying in %.1fs", self.topic, exc, backoff)
                await _sleep_or_stop(stop, backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)

    async def _lead(self, conn: LeaderSession, stop: asyncio.Event) -> None:
        await ensure_or_await_topics(
            self.bootstrap_servers, [self.topic], create=self.create_topics, stop=stop
        )
        producer = self._producer_factory()
        await producer.start()
        try:
            self.ready.set()
            await self._pump(producer, conn, stop)
        finally:
            await producer.stop()

    async def _pump(self, producer: AIOKafkaProducer, conn: LeaderSession, stop: asyncio.Event) -> None:
        self._ahead = None  # rows read by an earlier leadership may have been published since
        while not stop.is_set():
            # Cleared *before* reading the outbox: a NOTIFY that arrives while this batch is being
            # published sets it again, and the wait below returns at once instead of sleeping a
            # whole poll interval with a committed event waiting. A batch read ahead was read
            # before this point: the flag was cleared when that read started (publish_batch), and
            # what arrived since must survive, or a short batch read ahead sleeps on it.
            if not self._ahead:
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
                if self.gather and self._wake.is_set() and not stop.is_set():
                    await _sleep_or_stop(stop, self.gather)

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
        rows, self._ahead = self._ahead, None
        if not rows:
            rows = await conn.fetch(_PENDING, self.store.producer, self.batch_size, [])
        if not rows:
            await self._count_held(conn)
            return 0
        if self._isolating:
            return await self._publish_one_by_one(conn, producer, rows[:ISOLATION_ROWS])
        ahead: asyncio.Future[list[Any]] | None = None
        if len(rows) == self.batch_size:
            # A full batch: more is likely waiting. PostgreSQL reads it while this one is sent
            # and acknowledged; it is sent only once all of this batch is confirmed (else it is
            # dropped), so a stream's order never rests on two batches in flight. The wake-up
            # flag is cleared for this read, as _pump does for its own (see there).
            self._wake.clear()
            ahead = asyncio.ensure_future(
                conn.fetch(_PENDING, self.store.producer, self.batch_size, [r["position"] for r in rows])
            )
        futures: list[asyncio.Future[object]] = []
        sent: list[Any] = []
        held: dict[str, tuple[Any, BaseException]] = {}
        skipped = 0
        failure: BaseException | None = None
        next_rows: list[Any] | None = None
        try:
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
            next_rows = await _result_or_none(ahead) if failure is None and not held else None
        finally:
            if ahead is not None and next_rows is None:
                await _discard(ahead)
        await self._settle(conn, confirmed, held)
        if failure is not None:
            raise failure
        # Usable only if this whole batch is now gone from the outbox: what was read ahead is
        # then exactly the head of the outbox (less rows committed since, read next time).
        if len(confirmed) == len(rows):
            self._ahead = next_rows
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
            headers=relay_headers(row),
        )
        return future

    async def _settle(
        self, conn: Any, confirmed: list[int], held: dict[str, tuple[Any, BaseException]]
    ) -> None:
        if confirmed:
            await conn.execute(_DELETE, confirmed)
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
    async def _leadership(self, stop: asyncio.Event) -> AsyncIterator[LeaderSession | None]:
        """Hold a session advisory lock for the topic, and LISTEN on the same connection.

        Yields that connection (as a ``LeaderSession``), or None if stopped before becoming leader.
        The session is the relay's alone: it gets the relay's own settings (``RELAY_SESSION``:
        the lease, the plan-stable fetch) and is closed, never pooled, on the way out, so neither
        those settings nor the lock can ever reach another user of the pool. A follower that finds
        the lock taken ends the holder's session if it has been silent longer than the lease
        (``_FENCE``): a frozen leader loses the lock within the lease even where TCP says
        nothing is wrong."""

        def on_notify(*_: object) -> None:
            self._wake.set()

        async with self.engine.connect() as conn:
            raw = (await conn.get_raw_connection()).driver_connection
            assert raw is not None
            session = LeaderSession(raw, timeout=self.lease)
            try:
                for name, value in relay_session_settings(self.lease).items():
                    await session.execute(f"SET {name} = '{value}'")
                # Everything the leader will run, prepared while it holds nothing (LeaderSession).
                await session.prepare(*leader_statements())
                # LISTEN before the lock too: asyncpg's add_listener prepares it in two steps. A
                # follower's wake-ups only set a flag nobody reads until it leads.
                await asyncio.wait_for(raw.add_listener(OUTBOX_CHANNEL, on_notify), timeout=self.lease)
                while not stop.is_set():
                    got = await session.fetchval(_TRY_LOCK, int(LockSpace.RELAY_LEADER), self.topic)
                    if got:
                        break
                    await self._fence(session)
                    await _sleep_or_stop(stop, self.poll_interval)
                else:
                    yield None
                    return
                LEADER.labels(self.topic).set(1)
                try:
                    yield session
                finally:
                    LEADER.labels(self.topic).set(0)
                with contextlib.suppress(Exception):
                    await session.execute(_UNLOCK, int(LockSpace.RELAY_LEADER), self.topic)
            finally:
                # Never back to the pool: it may still hold the lock (an error, a cancellation, even
                # one that landed while pg_try_advisory_lock was in flight) and it carries the
                # relay's session settings. Closing it ends both.
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.invalidate(), timeout=self.lease)

    async def _fence(self, session: LeaderSession) -> None:
        """End the leader's session if it has not spoken for longer than the lease (it is frozen,
        or its connection is half-open): that frees the lock for the next attempt."""
        ended = await session.fetch(_FENCE, int(LockSpace.RELAY_LEADER), self.topic, self.lease)
        for row in ended:
            log.warning(
                "relay for %s: the leader's session (backend %d) was silent for %.1fs, longer than "
                "the %.1fs lease: ended it to take over",
                self.topic,
                row["pid"],
                row["silent"],
                self.lease,
            )

    async def _heartbeat(self, session: LeaderSession, stop: asyncio.Event) -> None:
        """Keep the leader's session talking (every ``lease / 4``), so that silence means the
        process is gone or frozen; a heartbeat that fails or is not answered within the lease ends
        the leadership (raises), as the server or a follower will already have ended the session."""
        del stop  # it ends with the pump, which finishes its batch first
        while True:
            await session.execute("SELECT 1")  # a simple query: nothing to prepare
            await asyncio.sleep(self.lease / 4)


#: The relay session's own settings (its lock connection only; never pooled afterwards).
#: - ``idle_session_timeout``: a leader that stops talking (frozen, or its host gone) loses its
#:   session, and with it the lock, after the lease; the heartbeat speaks every lease/4.
#: - ``idle_in_transaction_session_timeout``: the same for a session stuck inside a transaction.
#: - ``tcp_keepalives_*`` / ``tcp_user_timeout``: the server notices a peer that vanished from the
#:   network (a dead node) within ~lease*3 even when nothing is sent.
#: - plan stability for ``_PENDING`` and the DELETE: an index-ordered walk of ``outbox_pkey``,
#:   joined to ``events_pkey`` by nested loop, whatever the statistics say (a stale "outbox is
#:   empty" estimate once chose a sequential scan + top-N sort of the whole backlog, 472 ms per
#:   batch at 100k pending) and planned per execution, never from a generic plan.
def relay_session_settings(lease: float) -> dict[str, str]:
    ms = int(lease * 1000)
    return {
        "idle_session_timeout": str(ms),
        "idle_in_transaction_session_timeout": str(ms),
        "tcp_keepalives_idle": str(max(1, int(lease))),
        "tcp_keepalives_interval": str(max(1, int(lease / 2))),
        "tcp_keepalives_count": "3",
        "tcp_user_timeout": str(ms * 3),
        "plan_cache_mode": "force_custom_plan",
        "enable_seqscan": "off",
        "enable_sort": "off",
        "enable_hashjoin": "off",
        "enable_mergejoin": "off",
        "enable_bitmapscan": "off",
        "max_parallel_workers_per_gather": "0",
        "jit": "off",
    }


#: The backend holding the relay lock of a topic, if it has been silent (no statement started or
#: finished) for longer than the lease: terminated, which releases the lock. Same role, so no
#: extra privilege is needed.
_FENCE = """
SELECT a.pid, extract(epoch FROM now() - greatest(a.query_start, a.state_change))::float8 AS silent,
       pg_terminate_backend(a.pid) AS ended
FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.classid = $1::int::oid AND l.objid = hashtext($2)::oid
  AND a.pid <> pg_backend_pid()
  AND now() - greatest(a.query_start, a.state_change) > make_interval(secs => $3)
"""

_TRY_LOCK = "SELECT pg_try_advisory_lock($1, hashtext($2))"
_UNLOCK = "SELECT pg_advisory_unlock($1, hashtext($2))"


def leader_statements() -> tuple[str, ...]:
    """Every statement with parameters a relay session runs, prepared before it takes the lock
    (read when a session starts, so a test that swaps one in for a session gets it prepared)."""
    return (_TRY_LOCK, _FENCE, _PENDING, _DELETE, _HOLD, _HELD_COUNT, _UNLOCK)


class LeaderSession:
    """The leader's asyncpg connection, shared by the pump and the heartbeat: one statement at a
    time, each bounded by the lease (a statement the server does not answer in that time means a
    dead or partitioned server: the leadership ends instead of waiting for TCP, hours).

    Every statement with parameters is prepared by ``prepare`` before the lock is taken, and
    statements without are sent as simple queries. asyncpg prepares an unseen statement in two
    steps (Parse + Describe + Flush, then Bind + Execute + Sync); between them the server is in an
    implicit transaction waiting for the client, where neither ``idle_session_timeout`` nor
    ``idle_in_transaction_session_timeout`` is armed. A leader frozen in that window (its first
    batch, or any statement asyncpg re-prepares after its cache lifetime) kept the lock for ever
    when no follower was there to fence it. Explicitly prepared statements are never re-prepared.
    """

    def __init__(self, raw: Any, *, timeout: float) -> None:
        self.raw = raw
        self.timeout = timeout
        self._turn = asyncio.Lock()
        self._prepared: dict[str, Any] = {}

    async def prepare(self, *queries: str) -> None:
        async with self._turn:
            for query in queries:
                self._prepared[query] = await self.raw.prepare(query, timeout=self.timeout)

    def _statement(self, query: str) -> Any:
        statement = self._prepared.get(query)
        if statement is None:
            raise RuntimeError(f"relay statement not prepared before the lock: {query.strip()[:60]!r}")
        return statement

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        async with self._turn:
            rows: list[Any] = await self._statement(query).fetch(*args, timeout=self.timeout)
            return rows

    async def fetchval(self, query: str, *args: Any) -> Any:
        async with self._turn:
            return await self._statement(query).fetchval(*args, timeout=self.timeout)

    async def execute(self, query: str, *args: Any) -> None:
        """With parameters: a prepared statement; without: one simple query (never prepared)."""
        async with self._turn:
            if args:
                await self._statement(query).fetch(*args, timeout=self.timeout)
            else:
                await self.raw.execute(query, timeout=self.timeout)


async def _result_or_none(future: asyncio.Future[list[Any]] | None) -> list[Any] | None:
    """A read ahead's rows, or None when there was none or it failed: the next pass reads
    afresh (if the session itself broke, the delete that follows says so)."""
    if future is None:
        return None
    try:
        return await future
    except Exception:
        return None


async def _discard(future: asyncio.Future[Any]) -> None:
    """Cancel a read ahead that will not be used, and wait until it is over (the session runs one
    statement at a time); its outcome, whatever it was, is dropped."""
    future.cancel()
    await asyncio.wait([future])
    if not future.cancelled():
        future.exception()  # retrieved: no "exception was never retrieved" warning


async def _first_of(*work: Coroutine[Any, Any, None]) -> None:
    """Run ``work`` together until one of them returns or raises; cancel the others; re-raise."""
    tasks = [asyncio.ensure_future(w) for w in work]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    for task in done:
        if not task.cancelled() and (exc := task.exception()) is not None:
            raise exc


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
