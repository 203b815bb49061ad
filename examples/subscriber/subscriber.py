"""Follow claims.events and print every claim as it is filed.

Written only from the published contract (docs/EVENTS.md and docs/contracts/schemas/), as an
integrator would: it needs aiokafka and jsonschema, nothing of the services' code.

- validates every message against the JSON Schema of its event type and schema version;
- deduplicates by event_id (delivery is at least once) in a SQLite file, in the same transaction
  that records what was printed, and commits the Kafka offset only after that transaction: a
  restart resumes where it stopped, and a redelivered message is not printed twice;
- its own consumer group; skips event types it has no schema for (new types appear without notice).

    python subscriber.py --bootstrap 127.0.0.1:9092 --group my-claims-printer --state claims.sqlite3

Output: one JSON line per filed claim on stdout; notes (skipped, invalid, duplicate) on stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import sys
from pathlib import Path
from typing import Any

import jsonschema
from aiokafka import AIOKafkaConsumer, TopicPartition

HERE = Path(__file__).resolve().parent
DEFAULT_SCHEMAS = HERE.parents[1] / "docs" / "contracts" / "schemas"


def load_validators(directory: Path) -> dict[tuple[str, int], jsonschema.Draft202012Validator]:
    """``<EventType>.v<N>.json`` -> a validator per (event type, schema version)."""
    validators = {}
    for path in sorted(directory.glob("*.v*.json")):
        event_type, _, version = path.name.removesuffix(".json").rpartition(".v")
        schema = json.loads(path.read_text(encoding="utf-8"))
        validators[(event_type, int(version))] = jsonschema.Draft202012Validator(
            schema, format_checker=jsonschema.FormatChecker()
        )
    if not validators:
        raise SystemExit(f"no schemas found in {directory}")
    return validators


class Seen:
    """The event ids already handled, kept across restarts."""

    def __init__(self, path: Path) -> None:
        self.db = sqlite3.connect(path, isolation_level=None)
        self.db.execute("CREATE TABLE IF NOT EXISTS seen (event_id TEXT PRIMARY KEY, event_type TEXT)")

    def begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def first_time(self, event_id: str, event_type: str) -> bool:
        cur = self.db.execute(
            "INSERT INTO seen (event_id, event_type) VALUES (?, ?) ON CONFLICT DO NOTHING",
            (event_id, event_type),
        )
        return cur.rowcount == 1

    def commit(self) -> None:
        self.db.execute("COMMIT")


def note(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def handle(value: bytes, validators: dict[tuple[str, int], Any], seen: Seen, where: str) -> None:
    """One message: validate, deduplicate, print a filed claim."""
    try:
        envelope = json.loads(value)
        event_type, version = envelope["event_type"], int(envelope["schema_version"])
    except (ValueError, KeyError, TypeError):
        note(f"invalid {where}: not an event envelope")
        return
    validator = validators.get((event_type, version))
    if validator is None:
        note(f"skipped {where}: no schema for {event_type} v{version}")
        return
    errors = sorted(validator.iter_errors(envelope), key=lambda e: list(e.absolute_path))
    if errors:
        note(f"invalid {where}: {event_type} v{version}: {errors[0].message}")
        return
    if not seen.first_time(envelope["event_id"], event_type):
        note(f"duplicate {where}: {event_type} {envelope['event_id']}")
        return
    if event_type == "ClaimFiled":
        data = envelope["data"]
        print(
            json.dumps(
                {
                    "claim_filed": data["claim_id"],
                    "member_id": data["member_id"],
                    "report_id": data["report_id"],
                    "plan_code": data["plan_code"],
                    "benefit": data["benefit"],
                    "filed_on": data["filed_on"],
                    "required_documents": data["required_documents"],
                    "event_id": envelope["event_id"],
                },
                ensure_ascii=False,
            ),
            flush=True,
        )


async def run(args: argparse.Namespace) -> None:
    validators = load_validators(Path(args.schemas))
    seen = Seen(Path(args.state))
    consumer = AIOKafkaConsumer(
        args.topic,
        bootstrap_servers=args.bootstrap,
        group_id=args.group,
        enable_auto_commit=False,  # committed after our own transaction, below
        auto_offset_reset="earliest",  # a new group starts from what the topic still retains
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await consumer.start()
    note(f"following {args.topic} as group {args.group}")
    try:
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                continue
            seen.begin()
            offsets = {}
            for tp, records in batch.items():
                for record in records:
                    handle(
                        record.value or b"", validators, seen, f"{tp.topic}[{tp.partition}]@{record.offset}"
                    )
                offsets[TopicPartition(tp.topic, tp.partition)] = records[-1].offset + 1
            seen.commit()
            await consumer.commit(offsets)
    finally:
        await consumer.stop()
        note("stopped")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"))
    parser.add_argument("--topic", default="claims.events")
    parser.add_argument("--group", default="example.claims-printer", help="your own consumer group")
    parser.add_argument("--state", default="claims-printer.sqlite3", help="where seen event ids are kept")
    parser.add_argument("--schemas", default=str(DEFAULT_SCHEMAS), help="docs/contracts/schemas")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
