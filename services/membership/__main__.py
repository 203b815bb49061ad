"""``python -m services.membership``            serve HTTP on MEMBERSHIP_HOST:MEMBERSHIP_PORT
``python -m services.membership ops …``     operations (shared/ops.py)
``python -m services.membership rebuild``    rebuild the read models from the event store."""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.membership.app import MIGRATIONS, build_runtime, create_app
from services.membership.projections import rebuild_read_models
from services.membership.settings import MembershipSettings
from shared import ops
from shared.migrations import upgrade_to_head
from shared.projections import RebuildProgress
from shared.runtime import configure_logging, serve


async def _rebuild(settings: MembershipSettings, progress: RebuildProgress) -> int:
    await upgrade_to_head(MIGRATIONS, settings.database_url, wait_seconds=settings.db_wait_seconds)
    runtime = build_runtime(settings)
    try:
        return await rebuild_read_models(runtime.engine, runtime.store, progress=progress)
    finally:
        await runtime.engine.dispose()


def main() -> None:
    if sys.argv[1:2] == ["ops"]:  # python -m services.membership ops …  (see shared/ops.py)
        settings = MembershipSettings()
        configure_logging("WARNING", "membership")  # stdout stays the command's own output
        ops.main(build_runtime(settings), sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m services.membership")
    parser.add_argument("command", nargs="?", choices=["serve", "rebuild", "ops"], default="serve")
    args = parser.parse_args()
    settings = MembershipSettings()
    if args.command == "rebuild":
        configure_logging(settings.log_level, "membership")
        progress = RebuildProgress()
        asyncio.run(_rebuild(settings, progress))
        print(f"read models rebuilt from {progress.summary()}")
        return
    serve(create_app(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
