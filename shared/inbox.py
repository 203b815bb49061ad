"""The consumer side: idempotent reactions to upstream events, with attempts and a dead-letter topic.

For each message, in ONE transaction: record ``(consumer, event_id)`` in the inbox and apply the
reaction. The Kafka offset is committed only after that commit (faststream ``AckPolicy.MANUAL``):
a crash in between redelivers, and the inbox turns the redelivery into a no-op.
A message that keeps failing is copied to ``<topic>.dlq`` and acknowledged, so its partition moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any

from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.annotations import KafkaMessage
from prometheus_client import Counter
from pydantic import ValidationError
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.envelope import EventEnvelope
from shared.eventstore import ConcurrencyError, EventStore
from shared.kafka import dlq_topic
from shared.tables import inbox
from shared.unit_of_work import InlineProjection, UnitOfWork

log = logging.getLogger(__name__)

Reaction = Callable[[UnitOfWork, EventEnvelope], Awaitable[None]]

OUTCOMES = Counter("consumer_messages_total", "Messages handled", ["consumer", "outcome"])
RETRIES = Counter("consumer_retries_total", "Messages sought back for another try", ["consumer", "kind"])


class Outcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"  # an event type this consumer does not react to
    DEAD_LETTERED = "dead_lettered"


class PoisonMessage(Exception):
    """The message can never be processed (not an envelope at all): dead-letter it at once."""


def is_transient(exc: BaseException) -> bool:
    """Failures that say nothing about the message: retrying later will succeed."""
    if isinstance(exc, ConcurrencyError | OSError | TimeoutError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        # 40001 serialization failure, 40P01 deadlock, 55P03 lock timeout, 57014 query cancelled,
        # 57P01-03 server shutting down / starting; classes 08 (connection) and 53 (resources).
        code = str(sqlstate or "")
        return code in {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03"} or code[:2] in {
            "08",
            "53",
        }
    return False


class InboxConsumer:
    def __init__(
        self,
        name: str,
        engine: AsyncEngine,
        store: EventStore,
        reactions: Mapping[str, Reaction],
        *,
        max_attempts: int = 5,
        retry_backoff: float = 0.2,
        max_backoff: float = 10.0,
        projections: tuple[InlineProjection, ...] = (),
        fallback: Reaction | None = None,
    ) -> None:
        self.name = name
        self.engine = engine
        self.store = store
        self.reactions = dict(reactions)
        self.max_attempts = max_attempts
        self.retry_backoff = retry_backoff
        self.max_backoff = max_backoff
        self.projections = projections
        #: Runs for event types without a reaction of their own (e.g. types added upstream later).
        self.fallback = fallback
        self._attempts: dict[tuple[str, int, int], int] = {}

    async def handle(self, value: bytes) -> Outcome:
        """Apply one message exactly once (per consumer name). Raises if the reaction fails."""
        try:
            envelope = EventEnvelope.from_bytes(value)
        except ValidationError as exc:
            raise PoisonMessage(f"not an event envelope: {exc.error_count()} error(s)") from exc
        reaction = self.reactions.get(envelope.event_type, self.fallback)
        if reaction is None:
            return Outcome.SKIPPED
        uow = UnitOfWork(
            self.engine,
            self.store,
            correlation_id=envelope.correlation_id,
            causation_id=envelope.event_id,
            projections=self.projections,
        )
        async with uow:
            first_time = await uow.conn.scalar(
                pg_insert(inbox)
                .values(consumer=self.name, event_id=envelope.event_id, outcome=Outcome.PROCESSED)
                .on_conflict_do_nothing()
                .returning(inbox.c.event_id)
            )
            if first_time is None:
                return Outcome.DUPLICATE
            await reaction(uow, envelope)
            await uow.commit()
        return Outcome.PROCESSED

    def attach(self, broker: KafkaBroker, topic: str, *, group_id: str) -> Any:
        """Subscribe on ``broker``: manual acks, offset committed after the database commit."""

        subscriber = broker.subscriber(
            topic,
            group_id=group_id,
            ack_policy=AckPolicy.MANUAL,
            auto_offset_reset="earliest",
            # Hand our code the raw bytes: a body faststream failed to decode would otherwise
            # raise before our handler, be neither acked nor dead-lettered, and be skipped by
            # the next offset commit.
            decoder=_raw_bytes,
        )

        @subscriber
        async def on_message(body: bytes, msg: KafkaMessage) -> None:
            await self._deliver(broker, msg)

        return subscriber

    async def _deliver(self, broker: KafkaBroker, msg: KafkaMessage) -> None:
        """Every path ends in exactly one ack (offset moves on) or nack (seek back, redeliver):
        returning without either would let the next message's commit skip this one."""
        record = msg.raw_message
        assert not isinstance(record, tuple)
        key = (record.topic, record.partition, record.offset)
        try:
            outcome = await self.handle(record.value or b"")
        except Exception as exc:
            attempts = self._attempts.get(key, 0) + 1
            self._attempts[key] = attempts
            transient = is_transient(exc)
            RETRIES.labels(self.name, "transient" if transient else "failure").inc()
            if transient:
                # The database or the network, not the message: wait it out, never dead-letter.
                log.warning("%s: transient %s at %s[%d]@%d; retrying", self.name, type(exc).__name__, *key)
                await asyncio.sleep(min(self.max_backoff, self.retry_backoff * 2 ** min(attempts, 10)))
                await msg.nack()
                return
            if isinstance(exc, PoisonMessage) or attempts >= self.max_attempts:
                try:
                    await self._dead_letter(broker, record, exc, attempts)
                except Exception as dlq_exc:
                    log.error(
                        "%s: dead-letter publish failed (%s); will retry", self.name, type(dlq_exc).__name__
                    )
                    await asyncio.sleep(min(self.max_backoff, self.retry_backoff * 2 ** min(attempts, 10)))
                    await msg.nack()
                    return
                self._attempts.pop(key, None)
                OUTCOMES.labels(self.name, Outcome.DEAD_LETTERED).inc()
                await msg.ack()
                return
            log.warning(
                "%s: attempt %d/%d failed at %s[%d]@%d: %s",
                self.name,
                attempts,
                self.max_attempts,
                *key,
                type(exc).__name__,
            )
            await asyncio.sleep(self.retry_backoff * 2 ** (attempts - 1))
            await msg.nack()
            return
        self._attempts.pop(key, None)
        OUTCOMES.labels(self.name, outcome).inc()
        await msg.ack()

    async def _dead_letter(self, broker: KafkaBroker, record: Any, exc: BaseException, attempts: int) -> None:
        headers = {k: v.decode(errors="replace") for k, v in (record.headers or ())}
        headers.update(
            {
                "dlq_consumer": self.name,
                "dlq_error": f"{type(exc).__name__}: {exc}"[:500],
                "dlq_attempts": str(attempts),
                "dlq_original_topic": record.topic,
                "dlq_original_partition": str(record.partition),
                "dlq_original_offset": str(record.offset),
            }
        )
        log.error(
            "%s: dead-lettering %s[%d]@%d after %d attempt(s): %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            attempts,
            type(exc).__name__,
        )
        await broker.publish(
            record.value or b"", topic=dlq_topic(record.topic), key=record.key, headers=headers
        )


async def _raw_bytes(msg: KafkaMessage) -> bytes:
    return bytes(msg.body)
