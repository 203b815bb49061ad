"""``python -m services.counseling``                    serve HTTP, relay and consumer
``python -m services.counseling ops …``             operations (shared/ops.py)
``python -m services.counseling rebuild``           rebuild counsellors, slots, appointments
``python -m services.counseling reencrypt-notes``   rewrite every session note still under an
                                                    older key with COUNSELING_NOTES_KEY_ID's key

Key rotation: add the new key to COUNSELING_NOTES_KEYS beside the old one, point
COUNSELING_NOTES_KEY_ID at it and restart (new notes use it, old ones stay readable); run
``reencrypt-notes``; once it reports 0 notes left under other keys, the old key may be removed.
The members model is fed by membership.events: rebuild it by replaying that topic.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from services.counseling.app import MIGRATIONS, build_runtime, create_app
from services.counseling.projections import own_projection
from services.counseling.settings import CounselingSettings
from services.counseling.vault import NotesVault
from shared import ops
from shared.migrations import upgrade_to_head
from shared.projections import RebuildProgress, rebuild
from shared.runtime import configure_logging, serve


async def _rebuild(settings: CounselingSettings, progress: RebuildProgress) -> int:
    await upgrade_to_head(MIGRATIONS, settings.database_url, wait_seconds=settings.db_wait_seconds)
    runtime = build_runtime(settings)
    try:
        return await rebuild(runtime.engine, runtime.store, own_projection, progress=progress)
    finally:
        await runtime.engine.dispose()


async def reencrypt_notes(settings: CounselingSettings) -> tuple[int, dict[str, int]]:
    """(notes rewritten, notes per key afterwards): counts only, never a note."""
    await upgrade_to_head(MIGRATIONS, settings.database_url, wait_seconds=settings.db_wait_seconds)
    runtime = build_runtime(settings)
    vault = NotesVault(settings.notes_key_ring())
    try:
        rewritten = await vault.reencrypt(runtime.engine)
        async with runtime.engine.connect() as conn:
            return rewritten, await vault.keys_in_use(conn)
    finally:
        await runtime.engine.dispose()


def main() -> None:
    if sys.argv[1:2] == ["ops"]:  # python -m services.counseling ops …  (see shared/ops.py)
        settings = CounselingSettings()
        configure_logging("WARNING", "counseling")  # stdout stays the command's own output
        ops.main(build_runtime(settings), sys.argv[2:])
    parser = argparse.ArgumentParser(prog="python -m services.counseling")
    parser.add_argument(
        "command", nargs="?", choices=["serve", "rebuild", "reencrypt-notes", "ops"], default="serve"
    )
    args = parser.parse_args()
    settings = CounselingSettings()
    if args.command == "rebuild":
        configure_logging(settings.log_level, "counseling")
        progress = RebuildProgress()
        asyncio.run(_rebuild(settings, progress))
        print(f"counseling read models rebuilt from {progress.summary()}")
        return
    if args.command == "reencrypt-notes":
        configure_logging(settings.log_level, "counseling")
        rewritten, per_key = asyncio.run(reencrypt_notes(settings))
        others = sum(n for key, n in per_key.items() if key != settings.notes_key_id)
        print(
            f"{rewritten} notes re-encrypted under {settings.notes_key_id!r}; {others} left under other keys"
        )
        return
    serve(create_app(settings), settings, settings.host, settings.port)


if __name__ == "__main__":
    main()
