"""``python -m services.<name> ops …``: one command for each routine repair, against the
service's own database and Kafka (same environment variables as the service).

    ops outbox                         depth of the outbox, age of its oldest event
    ops lag                            lag of each consumer group, per partition
    ops reset-group G [--to latest]    move a stopped group to the earliest (or latest) offsets
    ops dlq list [--topic T]           what is in the dead-letter topic, and why
    ops dlq show P:O [--data]          one dead letter: headers, envelope (payload with --data)
    ops dlq replay P:O … | --all       re-publish the original value and headers to the
                                       original topic (consumers dedupe by event_id)
    ops stream ID [--data]             the events of one stream, in order
    ops migrate                        apply the Alembic migrations (waits for a late database)
    ops held list|release ID|drop ID   aggregates the relay holds back (shared/held.py)

``--json`` prints machine-readable output. Payloads (which may hold personal data, encrypted or
not) are printed only when asked for with ``--data``; never to a log.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TextIO

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.held import add_held_parser, run_held
from shared.kafka import dlq_topic, reliable_producer
from shared.metrics import consumer_lag, outbox_stats, topic_partitions
from shared.migrations import upgrade_to_head
from shared.runtime import ServiceRuntime

#: Header the replay adds, so a message that fails again shows where it came from.
REPLAYED_FROM = "dlq_replayed_from"


@dataclass(frozen=True)
class DeadLetter:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, bytes], ...]

    def header(self, name: str) -> str | None:
        found = [v for k, v in self.headers if k == name]
        return found[-1].decode(errors="replace") if found else None

    @property
    def original_topic(self) -> str | None:
        return self.header("dlq_original_topic")

    def original_headers(self) -> list[tuple[str, bytes]]:
        """The headers the message had before it was dead-lettered (the ``dlq_*`` ones dropped)."""
        return [(k, v) for k, v in self.headers if not k.startswith("dlq_")]

    def summary(self) -> dict[str, Any]:
        return {
            "position": f"{self.partition}:{self.offset}",
            "event_type": self.header("event_type"),
            "event_id": self.header("event_id"),
            "consumer": self.header("dlq_consumer"),
            "attempts": self.header("dlq_attempts"),
            "error": self.header("dlq_error"),
            "original": f"{self.original_topic}[{self.header('dlq_original_partition')}]"
            f"@{self.header('dlq_original_offset')}",
            "replayed_from": self.header(REPLAYED_FROM),
        }


async def read_dead_letters(bootstrap_servers: str, topic: str) -> list[DeadLetter]:
    """Everything the DLQ holds right now (beginning to the current end offsets), in order."""
    partitions = await topic_partitions(bootstrap_servers, [topic])
    if not partitions:
        return []
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap_servers, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        consumer.assign(partitions)
        beginning, end = await consumer.beginning_offsets(partitions), await consumer.end_offsets(partitions)
        # Explicit seeks: seek_to_beginning() races with the reset an assignment starts by itself
        # (measured: the position sometimes came back as the end offset, so nothing was read).
        for tp in partitions:
            consumer.seek(tp, beginning[tp])
        letters: list[DeadLetter] = []
        pending = {tp for tp in partitions if await consumer.position(tp) < end[tp]}
        while pending:
            batch = await consumer.getmany(*pending, timeout_ms=1000)
            for tp, records in batch.items():
                for r in records:
                    if r.offset < end[tp]:
                        letters.append(
                            DeadLetter(
                                r.topic, r.partition, r.offset, r.key, r.value or b"", tuple(r.headers or ())
                            )
                        )
            pending = {tp for tp in pending if await consumer.position(tp) < end[tp]}
        return sorted(letters, key=lambda d: (d.partition, d.offset))
    finally:
        await consumer.stop()


async def replay(bootstrap_servers: str, letters: Sequence[DeadLetter]) -> int:
    """Publish each dead letter's original value, key and headers to its original topic.

    Acknowledged by all in-sync replicas before this returns. Replaying twice is harmless: the
    consumers' inbox turns the second delivery of an ``event_id`` into a no-op."""
    for letter in letters:
        if not letter.original_topic:
            raise ValueError(f"{letter.topic}[{letter.partition}]@{letter.offset} has no dlq_original_topic")
    producer = reliable_producer(bootstrap_servers)
    await producer.start()
    try:
        for letter in letters:
            assert letter.original_topic is not None
            origin = f"{letter.topic}:{letter.partition}:{letter.offset}".encode()
            await producer.send_and_wait(
                letter.original_topic,
                letter.value,
                key=letter.key,
                headers=[*letter.original_headers(), (REPLAYED_FROM, origin)],
            )
    finally:
        await producer.stop()
    return len(letters)


class GroupActive(Exception):
    """The group has live members: resetting its offsets under them would be overwritten."""


async def reset_group(
    bootstrap_servers: str, group: str, topics: Sequence[str], *, to: str
) -> dict[str, int]:
    """Commit the earliest (or latest) offsets for ``group`` on every partition of ``topics``.

    Refused while the group has members: stop the service's consumers first (a running
    consumer would commit its own positions over ours)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers, request_timeout_ms=10_000)
    await admin.start()
    try:
        [described] = await admin.describe_consumer_groups([group])
        for g in described.to_object()["groups"]:
            if g["members"]:
                raise GroupActive(f"group {group} has {len(g['members'])} member(s) ({g.get('state', '?')})")
    finally:
        await admin.close()
    partitions = await topic_partitions(bootstrap_servers, topics)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap_servers, group_id=group, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(partitions)
        offsets = await (consumer.beginning_offsets if to == "earliest" else consumer.end_offsets)(partitions)
        if offsets:
            await consumer.commit(offsets)
    finally:
        await consumer.stop()
    return {f"{tp.topic}:{tp.partition}": offset for tp, offset in sorted(offsets.items())}


async def stream_events(engine: AsyncEngine, stream_id: str) -> list[dict[str, Any]]:
    """A stream's stored events, oldest first, as stored (no upcasting)."""
    query = sa.text(
        "SELECT position, version, stream_type, event_type, schema_version, event_id, occurred_at,"
        " correlation_id, causation_id, data,"
        " NOT EXISTS (SELECT 1 FROM outbox o WHERE o.position = e.position) AS published"
        " FROM events e WHERE stream_id = :id ORDER BY version"
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query, {"id": stream_id})).mappings().all()
    return [dict(r) for r in rows]


# --- the command line --------------------------------------------------------------------------


def _parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description="operations on this service")
    parser.add_argument("--json", action="store_true", help="machine-readable output")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("outbox", help="outbox depth and age of the oldest unpublished event")
    sub.add_parser("lag", help="consumer lag per group and partition")
    reset = sub.add_parser("reset-group", help="move a stopped consumer group to the earliest/latest offsets")
    reset.add_argument("group", help="one of this service's groups, e.g. claims.coverage")
    reset.add_argument("--to", choices=["earliest", "latest"], default="earliest")
    dlq = sub.add_parser("dlq", help="dead letters").add_subparsers(dest="action", required=True)
    for name in ("list", "show", "replay"):
        p = dlq.add_parser(name)
        p.add_argument("--topic", help="the dead-letter topic (default: this service's only one)")
        if name == "show":
            p.add_argument("position", help="PARTITION:OFFSET, as `dlq list` prints it")
            p.add_argument("--data", action="store_true", help="also print the payload")
        if name == "replay":
            p.add_argument("positions", nargs="*", help="PARTITION:OFFSET …")
            p.add_argument("--all", action="store_true", help="every dead letter in the topic")
    stream = sub.add_parser("stream", help="the events of one stream")
    stream.add_argument("stream_id")
    stream.add_argument("--data", action="store_true", help="also print the payloads")
    sub.add_parser("migrate", help="apply the database migrations")
    add_held_parser(sub)
    return parser


def _position(text: str) -> tuple[int, int]:
    partition, _, offset = text.partition(":")
    try:
        return int(partition), int(offset)
    except ValueError:
        raise SystemExit(f"not a PARTITION:OFFSET: {text!r}") from None


def _or_dash(value: object) -> str:
    return "-" if value is None else str(value)


class _Out:
    def __init__(self, stream: TextIO, as_json: bool) -> None:
        self.stream, self.as_json = stream, as_json

    def emit(self, payload: Any, text: str) -> None:
        print(
            json.dumps(payload, default=str, ensure_ascii=False) if self.as_json else text, file=self.stream
        )


async def run(runtime: ServiceRuntime, argv: Sequence[str], out: TextIO = sys.stdout) -> int:
    """Run one ops command for ``runtime``; returns the exit code."""
    argv = list(argv)
    as_json = "--json" in argv  # accepted anywhere: `ops lag --json` as well as `ops --json lag`
    args = _parser(f"python -m services.{runtime.name} ops").parse_args([a for a in argv if a != "--json"])
    emit = _Out(out, as_json or args.json).emit
    settings = runtime.settings
    try:
        if args.command == "migrate":
            await upgrade_to_head(
                runtime.migrations, settings.database_url, wait_seconds=settings.db_wait_seconds
            )
            async with runtime.engine.connect() as conn:
                revision = await conn.scalar(sa.text("SELECT version_num FROM alembic_version"))
            emit({"revision": revision}, f"database at revision {revision}")
            return 0
        if args.command == "outbox":
            stats = await outbox_stats(runtime.engine)
            age = "-" if stats.oldest_age_seconds is None else f"{stats.oldest_age_seconds:.1f}s"
            emit(
                asdict(stats),
                f"outbox depth {stats.depth}, oldest event position {stats.oldest_position} age {age}",
            )
            return 0
        if args.command == "lag":
            lags = await consumer_lag(settings.kafka_bootstrap_servers, runtime.consumer_groups())
            lines = [f"{'group':<28} {'topic':<40} {'part':>4} {'committed':>10} {'end':>10} {'lag':>8}"]
            lines += [
                f"{x.group:<28} {x.topic:<40} {x.partition:>4} {_or_dash(x.committed):>10} "
                f"{x.end:>10} {x.lag:>8}"
                for x in lags
            ]
            lines.append(f"total lag {sum(x.lag for x in lags)}")
            emit([asdict(x) for x in lags], "\n".join(lines))
            return 0
        if args.command == "reset-group":
            groups = runtime.consumer_groups()
            if args.group not in groups:
                raise SystemExit(f"unknown group {args.group!r}; this service runs: {', '.join(groups)}")
            try:
                offsets = await reset_group(
                    settings.kafka_bootstrap_servers, args.group, groups[args.group], to=args.to
                )
            except GroupActive as exc:
                emit({"error": str(exc)}, f"{exc}: stop the service first")
                return 1
            emit({"group": args.group, "offsets": offsets}, f"{args.group} reset to {args.to}: {offsets}")
            return 0
        if args.command == "stream":
            events = await stream_events(runtime.engine, args.stream_id)
            if not args.data:
                for e in events:
                    e.pop("data")
            if not events:
                emit([], f"no events in stream {args.stream_id}")
                return 1
            emit(
                events,
                "\n".join(
                    f"v{e['version']:<4} {e['event_type']:<28} {e['occurred_at']} position {e['position']}"
                    f" event {e['event_id']} {'published' if e['published'] else 'IN OUTBOX'}"
                    + (f"\n      {json.dumps(e['data'], ensure_ascii=False)}" if args.data else "")
                    for e in events
                ),
            )
            return 0
        if args.command == "held":
            await upgrade_to_head(
                runtime.migrations, settings.database_url, wait_seconds=settings.db_wait_seconds
            )
            return await run_held(runtime.engine, args)
        return await _dlq(runtime, args, emit)
    finally:
        await runtime.engine.dispose()


async def _dlq(runtime: ServiceRuntime, args: argparse.Namespace, emit: Callable[[Any, str], None]) -> int:
    known = [dlq_topic(sub.topic) for sub in runtime.subscriptions]
    topic = args.topic or (known[0] if len(known) == 1 else None)
    if topic is None:
        raise SystemExit(f"several dead-letter topics; choose one with --topic: {', '.join(known)}")
    bootstrap = runtime.settings.kafka_bootstrap_servers
    letters = await read_dead_letters(bootstrap, topic)
    if args.action == "list":
        rows = [d.summary() for d in letters]
        text = "\n".join(
            f"{r['position']:<10} {r['event_type'] or '?':<24} {r['event_id'] or '-':<36} "
            f"{r['consumer'] or '?'} x{r['attempts']}: {r['error']}"
            for r in rows
        )
        emit(rows, text or f"{topic} is empty")
        return 0
    by_position = {(d.partition, d.offset): d for d in letters}
    if args.action == "show":
        letter = by_position.get(_position(args.position))
        if letter is None:
            emit(None, f"no dead letter at {args.position} in {topic}")
            return 1
        shown: dict[str, Any] = {
            **letter.summary(),
            "topic": topic,
            "headers": {k: v.decode(errors="replace") for k, v in letter.headers},
        }
        try:
            envelope = json.loads(letter.value)
            data = envelope.pop("data", None) if isinstance(envelope, dict) else None
            shown["envelope"] = envelope
            if args.data:
                shown["data"] = data
        except ValueError:
            shown["envelope"] = None  # not JSON at all: a poison message
            if args.data:
                shown["data"] = letter.value.decode(errors="replace")
        emit(shown, json.dumps(shown, indent=2, default=str, ensure_ascii=False))
        return 0
    # replay
    if args.all:
        chosen = letters
    else:
        if not args.positions:
            raise SystemExit("name the dead letters to replay (PARTITION:OFFSET …) or pass --all")
        missing = [p for p in args.positions if _position(p) not in by_position]
        if missing:
            emit({"missing": missing}, f"no dead letter at {', '.join(missing)} in {topic}")
            return 1
        chosen = [by_position[_position(p)] for p in args.positions]
    count = await replay(bootstrap, chosen)
    emit(
        {"replayed": [f"{d.partition}:{d.offset}" for d in chosen]},
        f"replayed {count} dead letter(s) from {topic} to their original topic",
    )
    return 0


def main(runtime: ServiceRuntime, argv: Sequence[str]) -> None:
    """Entry point from ``services/<name>/__main__.py``."""
    raise SystemExit(asyncio.run(run(runtime, argv)))
