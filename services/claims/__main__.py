"""``python -m services.claims``            serve HTTP, relay and consumers on CLAIMS_HOST:CLAIMS_PORT
``python -m services.claims rebuild``    rebuild the claims read models from the event store.
``python -m services.claims ops held list|release ID|drop ID``  aggregates held back from Kafka
(see shared/ops.py).

The coverage model is not in this service's event store (it is fed by membership.events): to
rebuild it, empty the coverage tables and the ``coverage`` consumer's inbox rows, and replay the
topic with a fresh consumer group.
"""

from __future__ import annotations

import argparse
import asyncio

from sqlalchemy.ext.asyncio import create_async_engine

from services.claims.app import MIGRATIONS, ClaimsSettings, build_runtime, create_app
from services.claims.projections import own_projection
from shared.migrations import upgrade_to_head
from shared.ops import add_ops_parser, run_ops
from shared.projections import rebuild
from shared.runtime import configure_logging, serve


async def _rebuild(settings: ClaimsSettings) -> int:
    await upgrade_to_head(MIGRATIONS, settings.database_url)
    runtime = build_runtime(settings)
    try:
        return await rebuild(runtime.engine, runtime.store, own_projection)
    finally:
        await runtime.engine.dispose()


async def _ops(settings: ClaimsSettings, args: argparse.Namespace) -> int:
    await upgrade_to_head(MIGRATIONS, settings.database_url)
    engine = create_async_engine(settings.database_url)
    try:
        return await run_ops(engine, args)
    finally:
        await engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m services.claims")
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve HTTP, relay and consumers (the default)")
    commands.add_parser("rebuild", help="rebuild the read models from the event store")
    add_ops_parser(commands)
    args = parser.parse_args()
    settings = ClaimsSettings()
    if args.command == "ops":
        raise SystemExit(asyncio.run(_ops(settings, args)))
    if args.command == "rebuild":
        configure_logging(settings.log_level)
        print(f"claims read models rebuilt from {asyncio.run(_rebuild(settings))} events")
        return
    serve(create_app(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
