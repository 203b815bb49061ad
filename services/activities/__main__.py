"""``python -m services.activities``          serve HTTP, relay and consumer (ACTIVITIES_HOST:PORT)
``python -m services.activities ops …``   operations (shared/ops.py)
``python -m services.activities rebuild``  rebuild the activities read models from the event store.

The member read model (``known_members``) is fed by membership.events, not by this service's
store: to rebuild it, empty it and the ``members`` consumer's inbox and stream rows, and replay
the topic with a fresh consumer group (README, "Operations").
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.activities.app import MIGRATIONS, ActivitiesSettings, build_runtime, create_app
from services.activities.projections import own_projection
from shared import ops
from shared.migrations import upgrade_to_head
from shared.projections import RebuildProgress, rebuild
from shared.runtime import configure_logging, serve


async def _rebuild(settings: ActivitiesSettings, progress: RebuildProgress) -> int:
    await upgrade_to_head(MIGRATIONS, settings.database_url, wait_seconds=settings.db_wait_seconds)
    runtime = build_runtime(settings)
    try:
        return await rebuild(runtime.engine, runtime.store, own_projection, progress=progress)
    finally:
        await runtime.engine.dispose()


def main() -> None:
    if sys.argv[1:2] == ["ops"]:  # python -m services.activities ops …  (see shared/ops.py)
        settings = ActivitiesSettings()
        configure_logging("WARNING", "activities")
        ops.main(build_runtime(settings), sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m services.activities")
    parser.add_argument("command", nargs="?", choices=["serve", "rebuild", "ops"], default="serve")
    args = parser.parse_args()
    settings = ActivitiesSettings()
    if args.command == "rebuild":
        configure_logging(settings.log_level, "activities")
        progress = RebuildProgress()
        asyncio.run(_rebuild(settings, progress))
        print(f"activities read models rebuilt from {progress.summary()}")
        return
    serve(create_app(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
