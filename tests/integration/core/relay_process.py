"""The relay as a process of its own, so a test can SIGKILL it mid-batch.

usage: python -m tests.integration.core.relay_process DATABASE_URL TOPIC BOOTSTRAP BATCH_SIZE [LEASE]

Prints ``leader <pid>`` on stdout whenever it becomes the leader (the takeover test reads it).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys

from sqlalchemy.ext.asyncio import create_async_engine

from shared.eventstore import EventStore
from shared.relay import DEFAULT_LEASE_SECONDS, OutboxRelay
from shared.runtime import connect_args
from tests.integration.core.sample import registry


async def main(url: str, topic: str, bootstrap: str, batch_size: int, lease: float) -> None:
    engine = create_async_engine(url, connect_args=connect_args(url))
    relay = OutboxRelay(
        engine,
        EventStore("core-test", registry),
        topic,
        bootstrap,
        batch_size=batch_size,
        poll_interval=0.2,
        lease=lease,
    )

    async def announce() -> None:
        while True:
            await relay.ready.wait()
            print(f"leader {os.getpid()}", flush=True)
            while relay.ready.is_set():
                await asyncio.sleep(0.05)

    watcher = asyncio.create_task(announce())
    try:
        await relay.run(asyncio.Event())
    finally:
        watcher.cancel()


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    lease = float(sys.argv[5]) if len(sys.argv) > 5 else DEFAULT_LEASE_SECONDS
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), lease))
