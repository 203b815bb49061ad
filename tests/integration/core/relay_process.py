"""The relay as a process of its own, so a test can SIGKILL it mid-batch.

usage: python -m tests.integration.core.relay_process DATABASE_URL TOPIC BOOTSTRAP BATCH_SIZE
"""

from __future__ import annotations

import asyncio
import logging
import sys

from sqlalchemy.ext.asyncio import create_async_engine

from shared.eventstore import EventStore
from shared.relay import OutboxRelay
from tests.integration.core.sample import registry


async def main(url: str, topic: str, bootstrap: str, batch_size: int) -> None:
    engine = create_async_engine(url)
    relay = OutboxRelay(
        engine, EventStore("core-test", registry), topic, bootstrap, batch_size=batch_size, poll_interval=0.2
    )
    await relay.run(asyncio.Event())


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])))
