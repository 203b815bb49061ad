"""The consumer side's transaction: a batch of upstream events applied exactly once, in stream order.

For a batch of one partition's events, in ONE transaction: take the batch's locks (in one global
order, so concurrent batches cannot deadlock), record every ``(consumer, event_id)`` in the inbox,
apply each first-seen event's reaction, and advance the consumer's position in each upstream
stream. The Kafka offset is committed only after that commit (``shared.consumer``): a crash in
between redelivers, and the inbox turns the redelivery into a no-op.

Order per aggregate is checked, not assumed. A stream's next event must be exactly one version
above what this consumer applied; one that arrives early (the relay republished after a partial
failure, or the event before it was dead-lettered) is *parked* and applied, in order, by the
transaction that applies the missing version. Nothing is ever applied out of order or skipped.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from prometheus_client import Counter, Histogram
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine

from shared import driver, tracing
from shared.dispatch import HandlerTable
from shared.envelope import EventEnvelope
from shared.eventstore import ConcurrencyError, EventStore
from shared.locks import LockSpace
from shared.unit_of_work import InlineProjection, UnitOfWork

log = logging.getLogger(__name__)

Reaction = Callable[[UnitOfWork, EventEnvelope], Awaitable[None]]


@dataclass(frozen=True)
class RunReaction:
    """A reaction that can also take a *run* of consecutive events at once, for a projection
    that writes each event's rows and decides nothing (membership's record of the claims filed:
    two rows per report, one statement for a whole batch's worth instead of one each).

    ``one`` is the definition; ``many`` must leave exactly what ``one`` would, event by event
    in order, and append no events (it raises nothing but the database's own errors). The
    consumer hands ``many`` every run of two or more events whose reaction is this one, with
    nothing between them but events it passes over; a failure of ``many`` rolls the batch back
    and the batch is applied again through ``one``, so a failure is still pinned to its event."""

    one: Reaction
    many: Callable[[UnitOfWork, Sequence[EventEnvelope]], Awaitable[None]]

    async def __call__(self, uow: UnitOfWork, envelope: EventEnvelope) -> None:
        await self.one(uow, envelope)


class _RunFailed(Exception):
    """A run's ``many`` failed: which of its events is at fault is not known."""


OUTCOMES = Counter("consumer_messages_total", "Messages handled", ["consumer", "outcome"])
RETRIES = Counter("consumer_retries_total", "Batches or messages tried again", ["consumer", "kind"])
BATCH_SECONDS = Histogram(
    "consumer_batch_seconds",
    "Time to apply one partition's batch in one transaction",
    ["consumer"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)
BATCH_SIZE = Histogram(
    "consumer_batch_events",
    "Events per batch transaction",
    ["consumer"],
    buckets=(1, 2, 5, 10, 25, 50, 100, 250, 500),
)


class Outcome(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    SKIPPED = "skipped"  # an event type this consumer does not react to (its version still counts)
    PARKED = "parked"  # arrived before an earlier version of its stream; applied when that comes
    DEAD_LETTERED = "dead_lettered"


class PoisonMessage(Exception):
    """The message can never be processed (not an event envelope at all): dead-letter it at once."""


class ReactionFailed(Exception):
    """Applying ``envelopes[index]`` raised ``cause``; the whole batch was rolled back."""

    def __init__(self, index: int, cause: BaseException) -> None:
        super().__init__(f"event {index} of the batch failed: {type(cause).__name__}")
        self.index = index
        self.cause = cause


@dataclass
class BatchResult:
    outcomes: list[Outcome]
    #: Parked events whose own reaction failed when their turn came: to go to the dead-letter
    #: topic (they are no longer in the inbox, so replaying one applies it).
    dead_letters: list[tuple[EventEnvelope, BaseException]]
    #: Parked events applied when their predecessor was (each also PROCESSED): counted by the
    #: consumer once the batch committed, so a batch applied twice counts them once.
    released: int = 0


@dataclass(frozen=True, order=True)
class Lock:
    """A transaction-scoped advisory lock a reaction needs before it reads shared state.

    ``exclusive=False`` takes it shared: many batches may hold it together, and one exclusive
    holder waits for them all (and they for it)."""

    space: LockSpace
    name: str
    exclusive: bool = True


LockPlan = Callable[[EventEnvelope], Iterable[Lock]]

# The statements every batch sends go to asyncpg directly (shared/driver.py), in the batch's
# transaction: a batch of one event pays them all.
_LOCKS = """
    SELECT count(*) FROM (
        SELECT CASE WHEN ex THEN pg_advisory_xact_lock(s, hashtext(n))::text
                    ELSE pg_advisory_xact_lock_shared(s, hashtext(n))::text END
        FROM unnest($1::int[], $2::text[], $3::bool[]) WITH ORDINALITY AS l(s, n, ex, ord)
        ORDER BY ord
    ) taken
"""
_FIRST_SEEN = """
    INSERT INTO inbox (consumer, event_id, outcome)
    SELECT $1, id, 'processed' FROM unnest($2::uuid[]) AS id
    ON CONFLICT DO NOTHING
    RETURNING event_id
"""
#: Where this consumer is in each of the batch's streams, and which of their versions are parked.
_POSITIONS_AND_PARKED = """
    SELECT stream_id, version, false AS parked FROM consumer_streams
    WHERE consumer = $1 AND stream_id = ANY($2::text[])
    UNION ALL
    SELECT stream_id, version, true FROM consumer_parked
    WHERE consumer = $1 AND stream_id = ANY($2::text[])
"""
_PARK = sa.text(
    "INSERT INTO consumer_parked (consumer, stream_id, version, envelope) "
    "VALUES (:consumer, :stream, :version, CAST(:envelope AS jsonb)) ON CONFLICT DO NOTHING"
)
#: Deleting is what claims a parked event: of two transactions racing to apply it, one gets it.
_UNPARK = sa.text(
    "DELETE FROM consumer_parked WHERE consumer = :consumer AND stream_id = :stream AND version = :version "
    "RETURNING envelope"
)
_FORGET = sa.text("DELETE FROM inbox WHERE consumer = :consumer AND event_id = :event_id")
_ADVANCE = """
    INSERT INTO consumer_streams (consumer, stream_id, version)
    SELECT $1, s, v FROM unnest($2::text[], $3::int[]) AS p(s, v)
    ON CONFLICT (consumer, stream_id) DO UPDATE
        SET version = GREATEST(consumer_streams.version, EXCLUDED.version)
"""


def is_transient(exc: BaseException) -> bool:
    """Failures that say nothing about the message: retrying later will succeed."""
    if isinstance(exc, ReactionFailed):
        return is_transient(exc.cause)
    if isinstance(exc, ConcurrencyError | OSError | TimeoutError | PoolTimeout):
        return True
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated or isinstance(exc, OperationalError | InterfaceError):
            return True
        if _no_primary_yet(exc.orig):
            return True
        sqlstate = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
        # 40001 serialization failure, 40P01 deadlock, 55P03 lock timeout, 57014 query cancelled,
        # 57P01-03 server shutting down / starting; 25006 a write on a server that has become a
        # standby (the old primary, demoted); classes 08 (connection) and 53 (resources).
        code = str(sqlstate or "")
        return code in {"40001", "40P01", "55P03", "57014", "57P01", "57P02", "57P03", "25006"} or code[
            :2
        ] in {"08", "53"}
    return False


def _no_primary_yet(orig: BaseException | None) -> bool:
    """A multi-host URL with ``target_session_attrs=read-write`` reached every host and none is
    a primary yet: a failover under way (the standby not promoted yet). SQLAlchemy raises its own
    error type from asyncpg's, so the driver's is found in the chain."""
    seen = orig
    while seen is not None:
        if type(seen).__name__ == "TargetServerAttributeNotMatched":  # asyncpg.exceptions
            return True
        seen = seen.__cause__
    return False


#: PostgreSQL's int columns: a version above this can never be stored, so it can never be applied.
MAX_VERSION = 2**31 - 1


def decode(value: bytes | None, headers: Sequence[tuple[str, bytes]] | None = None) -> EventEnvelope:
    """The envelope in a record, or ``PoisonMessage`` for anything no consumer could ever store:
    not an envelope, a NUL character (PostgreSQL text and jsonb refuse it), a version out of range.

    Two forms are accepted, so a topic may be published by the relay or by Debezium (or by both
    around a cutover; duplicates are removed by ``event_id`` as always): the relay's envelope
    (``shared/envelope.py``), and the value Debezium's outbox event router makes from an
    ``events`` row with deploy/k8s/cdc's connector configuration (``from_debezium``)."""
    raw = value or b""
    if b"\\u0000" in raw or b"\x00" in raw:
        raise PoisonMessage("not storable: contains a NUL character")
    try:
        envelope = EventEnvelope.from_bytes(raw)
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        cdc = from_debezium(raw, headers)
        if cdc is None:
            raise PoisonMessage(f"not an event envelope: {type(exc).__name__}") from exc
        envelope = cdc
    if envelope.aggregate_version > MAX_VERSION:
        raise PoisonMessage("not storable: aggregate_version out of range")
    return envelope


#: Debezium's name for the column it routes as the value (``table.field.event.payload=data``).
DEBEZIUM_PAYLOAD = "payload"
#: The header Debezium's outbox router always writes the event id to (``table.field.event.id``).
DEBEZIUM_ID_HEADER = "id"


def from_debezium(raw: bytes, headers: Sequence[tuple[str, bytes]] | None = None) -> EventEnvelope | None:
    """The envelope in a Debezium outbox-router value, or None if ``raw`` is not one.

    deploy/k8s/cdc/connectors.yaml places the ``events`` columns in the value's envelope under
    the envelope's own field names (``stream_type:envelope:aggregate_type``, ...), the payload
    (``data``) under ``payload`` — an object with ``table.expand.json.payload``, a JSON string
    without it — and ``producer`` by an InsertField transform. The event id may also come only
    from Debezium's ``id`` header. Anything else missing is not an envelope (None)."""
    try:
        body = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(body, dict) or DEBEZIUM_PAYLOAD not in body or "data" in body:
        return None
    payload = body.pop(DEBEZIUM_PAYLOAD)
    if isinstance(payload, str):
        try:
            payload = json.loads(payload)
        except ValueError:
            return None
    body["data"] = payload
    if "event_id" not in body:
        for name, header in headers or ():
            if name == DEBEZIUM_ID_HEADER:
                body["event_id"] = header.decode(errors="replace")
    try:
        return EventEnvelope.model_validate(body)
    except ValueError:
        return None


#: Where a parked event keeps its trace context, next to the envelope's fields (which
#: ``EventEnvelope`` ignores when the event is released).
PARKED_TRACE_KEY = "_trace_context"


def _parked_json(envelope: EventEnvelope, trace: Mapping[str, str] | None) -> str:
    """The parked row's jsonb: the envelope, and only a context the W3C propagator accepts (a
    record's raw headers may hold a NUL, which jsonb refuses, or any amount of text)."""
    trace = tracing.normalised(trace)
    if not trace:
        return envelope.model_dump_json()
    return json.dumps({**envelope.model_dump(mode="json"), PARKED_TRACE_KEY: dict(trace)})


class InboxConsumer:
    """Applies batches of one upstream topic's events for one consumer name."""

    def __init__(
        self,
        name: str,
        engine: AsyncEngine,
        store: EventStore,
        reactions: Mapping[str, Reaction] | HandlerTable[Reaction],
        *,
        projections: tuple[InlineProjection, ...] = (),
        locks: LockPlan | None = None,
        follows: Collection[str] | None = None,
    ) -> None:
        self.name = name
        #: The aggregate types whose streams this consumer follows (None: all). An event of any
        #: other stream is passed over with no database work at all — no inbox row, no stream
        #: position, no transaction if the whole batch is such — since nothing the consumer
        #: keeps depends on it. On a topic that carries every injury report, a read model of
        #: members would otherwise store two rows per report, for ever, to say it ignored one.
        #: Those streams get no position, so *widening* ``follows`` (or dropping it) means
        #: replaying the consumer from the start (README, "Operations"): their next event would
        #: otherwise park behind versions that will not come again.
        if isinstance(follows, str | bytes):
            # A str is a Collection[str] too: frozenset("Member") would be its letters, and every
            # event of the stream meant would be skipped without a word.
            raise TypeError(f"follows must be a collection of aggregate types, not {follows!r}")
        self.follows = frozenset(follows) if follows is not None else None
        self.engine = engine
        self.store = store
        #: Runs for event types the table's registry does not know (types added upstream later),
        #: when the table names one (``@table.unregistered``); otherwise they are skipped.
        self.unregistered: Reaction | None = None
        if isinstance(reactions, HandlerTable):
            self.reactions = reactions.by_name()
            self.unregistered = reactions.unregistered_handler
            self.ignored = reactions.ignored_names()
        else:
            self.reactions = dict(reactions)
            self.ignored = set()
        self.projections = projections
        self.locks = locks

    async def apply(
        self,
        batch: Sequence[EventEnvelope],
        *,
        traces: Mapping[uuid.UUID, Mapping[str, str]] | None = None,
    ) -> BatchResult:
        """Apply ``batch`` (one partition's events, in offset order) in one transaction.

        Returns one outcome per envelope, and the parked events that failed when released (to be
        dead-lettered). Raises ``ReactionFailed`` naming the first envelope whose reaction
        raised; nothing of the batch is then committed. ``traces``: each event's W3C trace
        context (its record's ``traceparent`` header), continued by the span of its reaction and
        kept with it while it is parked."""
        traces = traces or {}
        if self.follows is not None and any(e.aggregate_type not in self.follows for e in batch):
            return await self._apply_followed(batch, traces)
        # While tracing is on, every event keeps a span of its own: no runs.
        if not tracing.enabled():
            try:
                return await self._apply(batch, traces, runs=True)
            except _RunFailed as failed:
                RETRIES.labels(self.name, "run").inc()
                log.warning(
                    "%s: a run failed (%s); the batch again, event by event",
                    self.name,
                    type(failed.__cause__).__name__,
                )
        return await self._apply(batch, traces, runs=False)

    async def _apply(
        self, batch: Sequence[EventEnvelope], traces: Mapping[uuid.UUID, Mapping[str, str]], *, runs: bool
    ) -> BatchResult:
        result = BatchResult([], [])
        if not batch:
            return result
        started = time.perf_counter()
        uow = UnitOfWork(self.engine, self.store, projections=self.projections)
        async with uow:
            conn = uow.conn
            await self._take_locks(uow, batch)
            ids = list(dict.fromkeys(e.event_id for e in batch))
            first_seen = {row[0] for row in await driver.fetch(conn, _FIRST_SEEN, self.name, ids)}
            streams = list(dict.fromkeys(e.aggregate_id for e in batch))
            position: dict[str, int] = {}
            parked: set[tuple[str, int]] = set()
            for stream, version, is_parked in await driver.fetch(
                conn, _POSITIONS_AND_PARKED, self.name, streams
            ):
                if is_parked:
                    parked.add((stream, version))
                else:
                    position[stream] = version
            advanced: dict[str, int] = {}
            outcomes = result.outcomes
            #: Events whose RunReaction waits to take them together; applied before anything
            #: else touches the transaction, so the order of effects is the order of events.
            run = _Run(self, uow, traces) if runs else None
            for index, envelope in enumerate(batch):
                if envelope.event_id not in first_seen:
                    outcomes.append(Outcome.DUPLICATE)
                    continue
                first_seen.discard(envelope.event_id)  # the same event twice in one batch
                stream, version = envelope.aggregate_id, envelope.aggregate_version
                applied = position.get(stream, 0)
                if version <= applied:
                    outcomes.append(Outcome.DUPLICATE)  # the same version under another event id
                    continue
                if version > applied + 1:
                    if run is not None:
                        await run.flush()
                    await conn.execute(
                        _PARK,
                        {
                            "consumer": self.name,
                            "stream": stream,
                            "version": version,
                            "envelope": _parked_json(envelope, traces.get(envelope.event_id)),
                        },
                    )
                    parked.add((stream, version))
                    outcomes.append(Outcome.PARKED)
                    log.warning(
                        "%s: %s v%d parked: v%d not applied yet", self.name, stream, version, applied + 1
                    )
                    continue
                if run is not None and await run.add(index, envelope):
                    outcomes.append(Outcome.PROCESSED)
                else:
                    if run is not None and self._reaction(envelope.event_type) is not None:
                        await run.flush()  # (an event no reaction takes is passed over)
                    try:
                        outcomes.append(await self._react(uow, envelope, traces.get(envelope.event_id)))
                    except Exception as exc:
                        raise ReactionFailed(index, exc) from exc
                position[stream] = advanced[stream] = version
                while (stream, position[stream] + 1) in parked:
                    if run is not None:
                        await run.flush()
                    nxt = position[stream] + 1
                    parked.discard((stream, nxt))
                    released = await self._release(uow, index, stream, nxt, result)
                    if not released:
                        break
                    position[stream] = advanced[stream] = nxt
            if run is not None:
                await run.flush()
            if advanced:
                await driver.execute(conn, _ADVANCE, self.name, list(advanced), list(advanced.values()))
            await uow.commit()
        BATCH_SECONDS.labels(self.name).observe(time.perf_counter() - started)
        BATCH_SIZE.labels(self.name).observe(len(batch))
        return result

    async def _apply_followed(
        self, batch: Sequence[EventEnvelope], traces: Mapping[uuid.UUID, Mapping[str, str]]
    ) -> BatchResult:
        """``apply`` for the events of followed streams; the others are SKIPPED where they stand
        (a failure's index still names its place in ``batch``)."""
        assert self.follows is not None
        places = [i for i, e in enumerate(batch) if e.aggregate_type in self.follows]
        outcomes = [Outcome.SKIPPED] * len(batch)
        if not places:
            return BatchResult(outcomes, [])
        try:
            inner = await self.apply([batch[i] for i in places], traces=traces)
        except ReactionFailed as failed:
            raise ReactionFailed(places[failed.index], failed.cause) from failed.cause
        for place, outcome in zip(places, inner.outcomes, strict=True):
            outcomes[place] = outcome
        return BatchResult(outcomes, inner.dead_letters, inner.released)

    async def _release(
        self, uow: UnitOfWork, index: int, stream: str, version: int, result: BatchResult
    ) -> bool:
        """Apply a parked event now that its predecessor is applied. In a savepoint: if *its*
        reaction fails, the failure is its own, not the predecessor's (which stays applied). It
        then leaves the park and the inbox (so a replay of it is applied, not deduplicated) and is
        handed back to be dead-lettered; its own successors stay parked behind it."""
        conn = uow.conn
        try:
            async with conn.begin_nested():
                row = await conn.scalar(
                    _UNPARK, {"consumer": self.name, "stream": stream, "version": version}
                )
                if row is None:  # another transaction applied it
                    return False
                envelope = EventEnvelope.model_validate(row)  # ignores the parked trace context
                await self._react(uow, envelope, row.get(PARKED_TRACE_KEY))
        except Exception as exc:
            # What the failed reaction read or dropped inside the savepoint (a catalogue it was
            # changing) is gone with it: the rest of the batch reads facts afresh.
            uow.memo.clear()
            if is_transient(exc):
                raise ReactionFailed(index, exc) from exc
            envelope = EventEnvelope.model_validate(
                await conn.scalar(_UNPARK, {"consumer": self.name, "stream": stream, "version": version})
            )
            await conn.execute(_FORGET, {"consumer": self.name, "event_id": envelope.event_id})
            result.dead_letters.append((envelope, exc))
            log.error(
                "%s: parked %s v%d failed when released: %s", self.name, stream, version, type(exc).__name__
            )
            return False
        result.released += 1
        return True

    def _reaction(self, event_type: str) -> Reaction | None:
        reaction = self.reactions.get(event_type)
        if reaction is None and event_type not in self.ignored:
            reaction = self.unregistered
        return reaction

    async def _react(
        self, uow: UnitOfWork, envelope: EventEnvelope, trace: Mapping[str, str] | None = None
    ) -> Outcome:
        reaction = self._reaction(envelope.event_type)
        if reaction is None:
            return Outcome.SKIPPED
        # What the reaction appends belongs to the upstream event's flow and is caused by it
        # (and, while tracing is on, to its trace: the append records the consumer span).
        uow.correlation_id, uow.causation_id = envelope.correlation_id, envelope.event_id
        with tracing.consumer_span(envelope.event_type, envelope.event_id, self.name, trace):
            await reaction(uow, envelope)
        return Outcome.PROCESSED

    async def _take_locks(self, uow: UnitOfWork, batch: Sequence[EventEnvelope]) -> None:
        if self.locks is None:
            return
        wanted: dict[tuple[LockSpace, str], bool] = {}
        for envelope in batch:
            for lock in self.locks(envelope):
                key = (lock.space, lock.name)
                wanted[key] = wanted.get(key, False) or lock.exclusive
        if not wanted:
            return
        ordered = sorted(wanted)  # one global order: two batches never wait on each other in a cycle
        await driver.fetch(
            uow.conn,
            _LOCKS,
            [int(space) for space, _ in ordered],
            [name for _, name in ordered],
            [wanted[k] for k in ordered],
        )


class _Run:
    """The events of one batch waiting for their ``RunReaction`` to take them together."""

    def __init__(
        self, inbox: InboxConsumer, uow: UnitOfWork, traces: Mapping[uuid.UUID, Mapping[str, str]]
    ) -> None:
        self.inbox, self.uow, self.traces = inbox, uow, traces
        self.reaction: RunReaction | None = None
        self.events: list[tuple[int, EventEnvelope]] = []

    async def add(self, index: int, envelope: EventEnvelope) -> bool:
        """Hold ``envelope`` back for a run if its reaction is a RunReaction (a run of another
        kind is written first); False: the caller flushes and reacts as usual."""
        reaction = self.inbox._reaction(envelope.event_type)
        if not isinstance(reaction, RunReaction):
            return False
        if self.events and reaction is not self.reaction:
            await self.flush()
        self.reaction = reaction
        self.events.append((index, envelope))
        return True

    async def flush(self) -> None:
        events, reaction = self.events, self.reaction
        self.events, self.reaction = [], None
        if not events:
            return
        uow = self.uow
        if len(events) == 1:
            index, envelope = events[0]
            try:
                await self.inbox._react(uow, envelope, self.traces.get(envelope.event_id))
            except Exception as exc:
                raise ReactionFailed(index, exc) from exc
            return
        assert reaction is not None
        last = events[-1][1]
        uow.correlation_id, uow.causation_id = last.correlation_id, last.event_id
        appended, failed = len(uow.appended), driver.failures(uow.conn)
        try:
            await reaction.many(uow, [envelope for _, envelope in events])
            if len(uow.appended) != appended:
                raise TypeError(f"{self.inbox.name}: a RunReaction's many appended events")
            if driver.failures(uow.conn) != failed:
                raise RuntimeError(f"{self.inbox.name}: a RunReaction's many swallowed a failed statement")
        except Exception as exc:
            raise _RunFailed() from exc
