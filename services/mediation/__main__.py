"""``python -m services.mediation``              serve HTTP on MEDIATION_HOST:MEDIATION_PORT
``python -m services.mediation sweep [DATE]``   the daily deadline sweep (a CronJob runs it)
``python -m services.mediation rotate-minutes``  re-encrypt minutes under the current key
``python -m services.mediation rebuild``        rebuild the read models from the event store
``python -m services.mediation ops …``          operations (shared/ops.py)."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date

from services.mediation import handlers, views
from services.mediation.app import MIGRATIONS, build_runtime, create_app
from services.mediation.projections import rebuild_read_models
from services.mediation.schemas import Sweep
from services.mediation.settings import MediationSettings
from services.mediation.vault import Vault
from shared import ops
from shared.aggregate import DomainError
from shared.clock import beijing_today
from shared.migrations import upgrade_to_head
from shared.projections import RebuildProgress
from shared.runtime import configure_logging, serve
from shared.unit_of_work import retrying


async def _offline(settings: MediationSettings, command: str, on: date | None) -> str:
    await upgrade_to_head(MIGRATIONS, settings.database_url, wait_seconds=settings.db_wait_seconds)
    runtime = build_runtime(settings)
    try:
        if command == "rebuild":
            progress = RebuildProgress()
            await rebuild_read_models(runtime.engine, runtime.store, progress=progress)
            return f"read models rebuilt from {progress.summary()}"
        if command == "rotate-minutes":
            vault = Vault(runtime.cipher, settings.key_ring())
            async with runtime.engine.begin() as conn:
                return f"{await vault.rotate_minutes(conn)} minutes re-encrypted"
        # The sweep's events reach Kafka through the outbox: the serving replicas' relay publishes them.
        result = await retrying(runtime.uow, lambda uow: handlers.sweep(uow, Sweep(on=on), beijing_today))
        return json.dumps(views.sweep_answer(result))
    finally:
        await runtime.engine.dispose()


def main() -> None:
    if sys.argv[1:2] == ["ops"]:
        settings = MediationSettings()
        configure_logging("WARNING", "mediation")
        ops.main(build_runtime(settings), sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m services.mediation")
    parser.add_argument(
        "command", nargs="?", choices=["serve", "sweep", "rebuild", "rotate-minutes", "ops"], default="serve"
    )
    parser.add_argument(
        "on", nargs="?", type=date.fromisoformat, help="sweep: the Beijing date (default today)"
    )
    args = parser.parse_args()
    settings = MediationSettings()
    if args.command != "serve":
        configure_logging(settings.log_level, "mediation")
        try:
            print(asyncio.run(_offline(settings, args.command, args.on)))
        except DomainError as refused:  # a sweep for a day after today
            sys.exit(f"{args.command}: {refused.message}")
        return
    serve(create_app(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
