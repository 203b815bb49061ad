"""``python -m services.membership``            serve HTTP on MEMBERSHIP_HOST:MEMBERSHIP_PORT
``python -m services.membership rebuild``    rebuild the read models from the event store.
``python -m services.membership ops held list|release ID|drop ID``  aggregates held back from Kafka
(see shared/ops.py)."""

from __future__ import annotations

import argparse
import asyncio

from sqlalchemy.ext.asyncio import create_async_engine

from services.membership.app import MIGRATIONS, build_runtime, create_app
from services.membership.projections import rebuild_read_models
from services.membership.settings import MembershipSettings
from shared.migrations import upgrade_to_head
from shared.ops import add_ops_parser, run_ops
from shared.runtime import configure_logging, serve


async def _rebuild(settings: MembershipSettings) -> int:
    await upgrade_to_head(MIGRATIONS, settings.database_url)
    runtime = build_runtime(settings)
    try:
        return await rebuild_read_models(runtime.engine, runtime.store)
    finally:
        await runtime.engine.dispose()


async def _ops(settings: MembershipSettings, args: argparse.Namespace) -> int:
    await upgrade_to_head(MIGRATIONS, settings.database_url)
    engine = create_async_engine(settings.database_url)
    try:
        return await run_ops(engine, args)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.membership")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve HTTP, relay and consumers (the default)")
    commands.add_parser("rebuild", help="rebuild the read models from the event store")
    add_ops_parser(commands)
    args = parser.parse_args()
    settings = MembershipSettings()
    if args.command == "ops":
        raise SystemExit(asyncio.run(_ops(settings, args)))
    if args.command == "rebuild":
        configure_logging(settings.log_level)
        replayed = asyncio.run(_rebuild(settings))
        print(f"read models rebuilt from {replayed} events")
        return
    serve(create_app(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
