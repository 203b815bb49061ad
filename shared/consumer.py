"""The Kafka side of a consumer: fetch in batches, work partitions concurrently, commit after the database.

Each poll returns up to ``max_records`` records across the partitions this process owns. Every
partition's records are applied by ``InboxConsumer.apply`` in one transaction (so one commit and
one offset commit carry hundreds of events), all partitions at the same time, each strictly in
offset order. Offsets are committed only for what the database committed.

Failures, counted apart:
- *transient* (database or network): the batch is retried with backoff, without limit, and never
  counts toward dead-lettering;
- *the event's own* (its reaction raised): the events before it are committed, then it is tried
  alone up to ``max_attempts`` times; after that it goes to ``<topic>.dlq`` and the partition moves
  on. Later events of the same stream are then parked by the inbox (never applied out of order)
  until the dead letter is replayed;
- *not an envelope*: dead-lettered at once.

Rebalance: the listener waits for the batch in hand to finish and its offsets to be committed
before partitions are handed over, and a batch that is only retrying stops early, so a partition
never moves with an offset committed past work that did not commit.

Written on aiokafka directly, not faststream: faststream 0.7's batch subscriber ignores
``max_workers`` (no concurrent partitions) and its ``ack()`` commits every partition's position at
once (``consumer.commit()``), which would commit past another partition's unfinished work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.abc import ConsumerRebalanceListener
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError, MessageSizeTooLargeError
from aiokafka.structs import OffsetAndMetadata

from shared import tracing
from shared.envelope import EventEnvelope
from shared.inbox import (
    OUTCOMES,
    RETRIES,
    InboxConsumer,
    Outcome,
    PoisonMessage,
    ReactionFailed,
    decode,
    is_transient,
)
from shared.kafka import dlq_topic, reliable_producer

log = logging.getLogger(__name__)

#: aiokafka ships no type information: a record is typed loosely.
Record = Any


@dataclass(frozen=True)
class _Rebuilt:
    """The fields of a consumer record that dead-lettering reads."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]]


class _Interrupted(Exception):
    """The partition is being handed over (or the process stops): leave the rest to its next owner."""


class KafkaConsumerLoop:
    """Runs one ``InboxConsumer`` against one topic in one consumer group."""

    def __init__(
        self,
        inbox: InboxConsumer,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        *,
        max_records: int = 500,
        max_attempts: int = 5,
        retry_backoff: float = 0.2,
        max_backoff: float = 10.0,
        fetch_min_bytes: int = 1,
        fetch_wait_ms: int = 100,
        producer_factory: Callable[[], AIOKafkaProducer] | None = None,
    ) -> None:
        self.inbox = inbox
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.group_id = group_id
        self.max_records = max_records
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.fetch_min_bytes = fetch_min_bytes
        self.fetch_wait_ms = fetch_wait_ms
        self._producer_factory = producer_factory or (lambda: reliable_producer(bootstrap_servers))
        self._busy = asyncio.Lock()
        self._handing_over = asyncio.Event()
        self._stop = asyncio.Event()
        self._attempts: dict[tuple[int, int], int] = {}
        #: Set once the group has given this process its partitions (tests and health wait on it).
        self.assigned = asyncio.Event()

    @property
    def name(self) -> str:
        return self.inbox.name

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set; Kafka being down (at start or later) is waited out."""
        self._stop = stop
        backoff = 0.5
        while not stop.is_set():
            consumer = AIOKafkaConsumer(
                self.topic,
                bootstrap_servers=self.bootstrap_servers,
                group_id=self.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                max_poll_records=self.max_records,
                fetch_min_bytes=self.fetch_min_bytes,
                fetch_max_wait_ms=self.fetch_wait_ms,
            )
            consumer.subscribe([self.topic], listener=_Listener(self))
            producer = self._producer_factory()
            try:
                await consumer.start()
                await producer.start()
                backoff = 0.5
                await self._poll(consumer, producer, stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: consumer stopped (%s); restarting", self.name, type(exc).__name__)
                await _sleep_or_stop(stop, backoff * (0.5 + random.random()))
                backoff = min(backoff * 2, self.max_backoff)
            finally:
                self.assigned.clear()
                with contextlib.suppress(Exception):
                    await consumer.stop()
                with contextlib.suppress(Exception):
                    await producer.stop()

    async def _poll(
        self, consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, stop: asyncio.Event
    ) -> None:
        stopping = asyncio.ensure_future(stop.wait())
        try:
            while not stop.is_set():
                fetch = asyncio.ensure_future(consumer.getmany(timeout_ms=500, max_records=self.max_records))
                await asyncio.wait({fetch, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not fetch.done():
                    fetch.cancel()
                    with contextlib.suppress(asyncio.CancelledError, Exception):
                        await fetch
                    return
                batches: dict[TopicPartition, list[Record]] = fetch.result()
                if not batches:
                    continue
                async with self._busy:
                    done = await asyncio.gather(
                        *(self._partition(producer, tp, records) for tp, records in batches.items())
                    )
                    offsets = {tp: OffsetAndMetadata(o, "") for tp, o in done if o is not None}
                    if offsets:
                        await self._commit(consumer, offsets)
                    for tp, o in done:
                        nxt = batches[tp][-1].offset + 1
                        if o is None or o < nxt:
                            # Interrupted before the end: the next owner (or this process after the
                            # rebalance) starts again from the committed offset.
                            with contextlib.suppress(IllegalStateError):
                                consumer.seek(tp, o if o is not None else batches[tp][0].offset)
        finally:
            stopping.cancel()

    async def _commit(
        self, consumer: AIOKafkaConsumer, offsets: dict[TopicPartition, OffsetAndMetadata]
    ) -> None:
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError) as exc:
            # The group moved on: the database has the work; the next owner gets the records
            # again and the inbox makes them no-ops.
            log.warning("%s: offset commit refused after a rebalance (%s)", self.name, type(exc).__name__)

    async def _partition(
        self, producer: AIOKafkaProducer, tp: TopicPartition, records: Sequence[Record]
    ) -> tuple[TopicPartition, int | None]:
        """Apply one partition's records in order; return the offset to commit (None: nothing)."""
        decoded: list[EventEnvelope | PoisonMessage] = []
        #: Each event's trace context from its record's headers (only while tracing is on).
        traces: dict[uuid.UUID, dict[str, str]] = {}
        for record in records:
            try:
                envelope = decode(record.value, record.headers)
            except PoisonMessage as exc:
                decoded.append(exc)
                continue
            decoded.append(envelope)
            if tracing.enabled() and (carrier := tracing.carrier_from_headers(record.headers)):
                traces[envelope.event_id] = carrier
        committed: int | None = None
        i = 0
        cap = len(records)  # how many events the next transaction may take
        transient_tries = 0
        try:
            while i < len(records):
                if self._handing_over.is_set() or self._stop.is_set():
                    raise _Interrupted
                head = decoded[i]
                if isinstance(head, PoisonMessage):
                    await self._dead_letter(producer, records[i], head, attempts=1)
                    committed, i = records[i].offset + 1, i + 1
                    continue
                envelopes: list[EventEnvelope] = []
                for item in decoded[i : i + cap]:
                    if isinstance(item, PoisonMessage):
                        break
                    envelopes.append(item)
                try:
                    outcomes = await self.inbox.apply(envelopes, traces=traces)
                except ReactionFailed as failed:
                    if is_transient(failed):
                        transient_tries += 1
                        RETRIES.labels(self.name, "transient").inc()
                        log.warning(
                            "%s: transient %s at %s[%d]@%d; retrying",
                            self.name,
                            type(failed.cause).__name__,
                            tp.topic,
                            tp.partition,
                            records[i + failed.index].offset,
                        )
                        await self._pause(self._backoff(transient_tries))
                        continue
                    if failed.index > 0:
                        cap = failed.index  # commit the events before the failing one first
                        continue
                    cap = len(records)
                    if await self._failed(producer, records[i], failed.cause):
                        committed, i = records[i].offset + 1, i + 1
                    continue
                except Exception as exc:  # outside any reaction: the locks, the inbox, the positions
                    if not is_transient(exc):
                        # Deterministic, so some event's data is at fault (a value the database
                        # cannot take): narrow down to the first event and count it as its own.
                        if len(envelopes) > 1:
                            cap = 1
                            continue
                        cap = len(records)
                        if await self._failed(producer, records[i], exc):
                            committed, i = records[i].offset + 1, i + 1
                        continue
                    transient_tries += 1
                    RETRIES.labels(self.name, "transient").inc()
                    log.warning(
                        "%s: batch failed outside any reaction (%s); retrying", self.name, type(exc).__name__
                    )
                    await self._pause(self._backoff(transient_tries))
                    continue
                transient_tries = 0
                for envelope, cause in outcomes.dead_letters:
                    await self._dead_letter_parked(producer, tp, envelope, cause)
                for outcome in outcomes.outcomes:
                    OUTCOMES.labels(self.name, outcome).inc()
                if outcomes.released:
                    OUTCOMES.labels(self.name, Outcome.PROCESSED).inc(outcomes.released)
                for r in records[i : i + len(envelopes)]:
                    self._attempts.pop((tp.partition, r.offset), None)
                i += len(envelopes)
                committed = records[i - 1].offset + 1
                cap = len(records)
        except _Interrupted:
            pass
        return tp, committed

    async def _failed(self, producer: AIOKafkaProducer, record: Record, cause: BaseException) -> bool:
        """The event's own failure: count it; at the limit dead-letter it. True if dead-lettered."""
        key = (record.partition, record.offset)
        attempts = self._attempts.get(key, 0) + 1
        RETRIES.labels(self.name, "failure").inc()
        if attempts < self.max_attempts:
            self._attempts[key] = attempts
            log.warning(
                "%s: attempt %d/%d failed at %s[%d]@%d: %s",
                self.name,
                attempts,
                self.max_attempts,
                record.topic,
                record.partition,
                record.offset,
                type(cause).__name__,
            )
            await self._pause(self.retry_backoff * 2 ** (attempts - 1))
            return False
        await self._dead_letter(producer, record, cause, attempts)
        self._attempts.pop(key, None)
        return True

    async def _dead_letter(
        self, producer: AIOKafkaProducer, record: Record, exc: BaseException, attempts: int
    ) -> None:
        """Copy the record to ``<topic>.dlq``, retrying until Kafka takes it (never dropped)."""
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq_")]
        headers += [
            (k, v.encode())
            for k, v in {
                "dlq_consumer": self.name,
                "dlq_error": f"{type(exc).__name__}: {exc}"[:500],
                "dlq_attempts": str(attempts),
                "dlq_original_topic": record.topic,
                "dlq_original_partition": str(record.partition),
                "dlq_original_offset": str(record.offset),
            }.items()
        ]
        log.error(
            "%s: dead-lettering %s[%d]@%d after %d attempt(s): %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            type(exc).__name__,
        )
        tries = 0
        value = record.value
        while True:
            try:
                await producer.send_and_wait(
                    dlq_topic(record.topic), value=value, key=record.key, headers=headers
                )
                break
            except MessageSizeTooLargeError:
                # Retrying can never help: keep the error and where the original is (it stays
                # on its topic until retention), without its value.
                log.error("%s: dead letter too large for Kafka; sending it without its value", self.name)
                headers.append(("dlq_value_dropped", f"too large: {len(value or b'')} bytes".encode()))
                value = b""
            except KafkaError as dlq_exc:
                tries += 1
                log.error("%s: dead-letter publish failed (%s); retrying", self.name, type(dlq_exc).__name__)
                await self._pause(self._backoff(tries))
        OUTCOMES.labels(self.name, Outcome.DEAD_LETTERED).inc()

    async def _dead_letter_parked(
        self, producer: AIOKafkaProducer, tp: TopicPartition, envelope: EventEnvelope, exc: BaseException
    ) -> None:
        """A parked event that failed when released: its record was committed long ago, so it is
        rebuilt from the envelope (the original offset is no longer known: -1)."""
        record = _Rebuilt(
            tp.topic, tp.partition, -1, envelope.kafka_key(), envelope.to_bytes(), envelope.kafka_headers()
        )
        await self._dead_letter(producer, record, exc, attempts=1)

    def _backoff(self, tries: int) -> float:
        return float(min(self.max_backoff, self.retry_backoff * 2 ** min(tries, 10)))

    async def _pause(self, seconds: float) -> None:
        """Sleep, but give way at once to a rebalance or a stop."""
        waiters = {
            asyncio.ensure_future(self._handing_over.wait()),
            asyncio.ensure_future(self._stop.wait()),
        }
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waiters:
                w.cancel()
        if self._handing_over.is_set() or self._stop.is_set():
            raise _Interrupted


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, loop: KafkaConsumerLoop) -> None:
        self.loop = loop

    async def on_partitions_revoked(self, revoked: Any) -> None:
        # Ask the batch in hand to stop at its next retry, then wait until its offsets are
        # committed: only then may another member take the partitions.
        self.loop._handing_over.set()
        async with self.loop._busy:
            pass
        self.loop._attempts.clear()
        self.loop.assigned.clear()

    async def on_partitions_assigned(self, assigned: Any) -> None:
        self.loop._handing_over.clear()
        if assigned:
            self.loop.assigned.set()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
