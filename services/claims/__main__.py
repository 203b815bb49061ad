"""``python -m services.claims``            serve HTTP, relay and consumers on CLAIMS_HOST:CLAIMS_PORT
``python -m services.claims ops …``     operations (shared/ops.py)
``python -m services.claims rebuild``    rebuild the claims read models from the event store.

The coverage model is not in this service's event store (it is fed by membership.events): to
rebuild it, empty the coverage tables and the ``coverage`` consumer's inbox rows, and replay the
topic with a fresh consumer group.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.claims.app import MIGRATIONS, ClaimsSettings, build_runtime, create_app
from services.claims.projections import own_projection
from shared import ops
from shared.migrations import upgrade_to_head
from shared.projections import RebuildProgress, rebuild
from shared.runtime import configure_logging, serve


async def _rebuild(settings: ClaimsSettings, progress: RebuildProgress) -> int:
    await upgrade_to_head(MIGRATIONS, settings.database_url, wait_seconds=settings.db_wait_seconds)
    runtime = build_runtime(settings)
    try:
        return await rebuild(runtime.engine, runtime.store, own_projection, progress=progress)
    finally:
        await runtime.engine.dispose()


def main() -> None:
    if sys.argv[1:2] == ["ops"]:  # python -m services.claims ops …  (see shared/ops.py)
        settings = ClaimsSettings()
        configure_logging("WARNING", "claims")  # stdout stays the command's own output
        ops.main(build_runtime(settings), sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m services.claims")
    parser.add_argument("command", nargs="?", choices=["serve", "rebuild", "ops"], default="serve")
    args = parser.parse_args()
    settings = ClaimsSettings()
    if args.command == "rebuild":
        configure_logging(settings.log_level, "claims")
        progress = RebuildProgress()
        asyncio.run(_rebuild(settings, progress))
        print(f"claims read models rebuilt from {progress.summary()}")
        return
    serve(create_app(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
