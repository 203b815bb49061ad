"""Plain aiokafka helpers the tests use to observe what really reached the broker."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer


@dataclass(frozen=True)
class Received:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: dict[str, bytes]


async def read_topic(bootstrap: str, topic: str, *, expect: int, timeout: float = 30.0) -> list[Received]:
    """Read ``topic`` from the beginning until ``expect`` messages arrived or ``timeout`` passed.

    Waits a little more after reaching ``expect`` so that extra (duplicate) messages show up too.
    """
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        group_id=None,
    )
    await consumer.start()
    out: list[Received] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200, max_records=1000)
            for records in batch.values():
                for r in records:
                    out.append(
                        Received(
                            r.topic,
                            r.partition,
                            r.offset,
                            r.key,
                            r.value or b"",
                            dict(r.headers or ()),
                        )
                    )
            if len(out) >= expect:
                settle_until = settle_until or time.monotonic() + 0.5
                if time.monotonic() >= settle_until:
                    break
        return out
    finally:
        await consumer.stop()


async def eventually(check, *, timeout: float = 30.0, interval: float = 0.1):  # type: ignore[no-untyped-def]
    """Poll an async ``check`` until it returns something truthy; return that value."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")
