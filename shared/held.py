"""Held-back streams, for ``python -m services.<name> ops held list|release|drop`` (shared/ops.py).

A held stream is an aggregate whose publishing stopped because Kafka refused one of its events
for good (see shared/relay.py). Inspect it, then either

- ``release STREAM_ID``: publish again from the refused event (after raising the topic's
  ``max.message.bytes``, say); if Kafka refuses it again it is held again;
- ``drop STREAM_ID``: give up on publishing the refused event (it stays in the event store; its
  consumers never see it, so say so to them), then publish the rest of that stream.
"""

from __future__ import annotations

import argparse
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from shared.tables import events, outbox, outbox_held


async def held_streams(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Each held stream with the refused event and how many of its events wait behind it."""
    waiting = (
        sa.select(sa.func.count())
        .select_from(outbox.join(events, events.c.position == outbox.c.position))
        .where(events.c.stream_id == outbox_held.c.stream_id)
        .scalar_subquery()
    )
    query = sa.select(outbox_held, waiting.label("waiting")).order_by(outbox_held.c.held_at)
    async with engine.connect() as conn:
        return [dict(r) for r in (await conn.execute(query)).mappings()]


async def release(engine: AsyncEngine, stream_id: str) -> bool:
    """Let the relay try the stream again from its refused event. False if it was not held."""
    async with engine.begin() as conn:
        result = await conn.execute(sa.delete(outbox_held).where(outbox_held.c.stream_id == stream_id))
    return bool(result.rowcount)


async def drop(engine: AsyncEngine, stream_id: str) -> int | None:
    """Unqueue the refused event (never published) and release the stream. Returns its position,
    or None if the stream was not held."""
    async with engine.begin() as conn:
        held = outbox_held.c
        position = await conn.scalar(
            sa.delete(outbox_held).where(held.stream_id == stream_id).returning(held.position)
        )
        if position is None:
            return None
        await conn.execute(sa.delete(outbox).where(outbox.c.position == position))
    return int(position)


def add_held_parser(commands: Any) -> None:
    """Add ``held list|release|drop`` to the ``ops`` sub-commands."""
    held = commands.add_parser("held", help="aggregates held back from Kafka").add_subparsers(
        dest="action", required=True
    )
    held.add_parser("list", help="show held streams")
    for action, text in (("release", "publish again from the refused event"), ("drop", "skip it")):
        held.add_parser(action, help=text).add_argument("stream_id")


async def run_held(engine: AsyncEngine, args: argparse.Namespace) -> int:
    """Run the parsed ``ops held`` command, print what happened; the process exit code."""
    if args.action == "list":
        rows = await held_streams(engine)
        if not rows:
            print("no held streams")
        for r in rows:
            print(
                f"{r['stream_id']}  position={r['position']} {r['event_type']} {r['value_bytes']} bytes "
                f"{r['error']} held_at={r['held_at'].isoformat()} waiting={r['waiting']}"
            )
        return 0
    if args.action == "release":
        done = await release(engine, args.stream_id)
        print("released" if done else "not held")
        return 0 if done else 1
    position = await drop(engine, args.stream_id)
    print("not held" if position is None else f"dropped event at position {position}; stream released")
    return 0 if position is not None else 1
