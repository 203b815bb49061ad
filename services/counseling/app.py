"""Wiring of the counseling service: settings, runtime, consumer of membership.events, HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.counseling import api
from services.counseling.handlers import MEMBER_STREAMS, MEMBERSHIP_REACTIONS
from services.counseling.projections import apply_own
from services.counseling.settings import CounselingSettings
from services.counseling.vault import ClientVault, NotesVault
from shared.audit import AuditTrail
from shared.clock import Clock, beijing_today
from shared.contracts.counseling import registry
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: CounselingSettings | None = None) -> ServiceRuntime:
    settings = settings or CounselingSettings()
    runtime = ServiceRuntime(
        name="counseling",
        settings=settings,
        registry=registry,
        migrations=MIGRATIONS,
        projections=(apply_own,),
    )
    # Unknown (newer) membership types are skipped: nothing here depends on their versions.
    runtime.subscribe(
        runtime.consumer("members", MEMBERSHIP_REACTIONS, follows=MEMBER_STREAMS),
        settings.membership_topic,
        background=True,
    )
    return runtime


def create_app(settings: CounselingSettings | None = None, *, clock: Clock = beijing_today) -> FastAPI:
    """The counseling HTTP app; its lifespan migrates the database and runs relay and consumer.
    ``clock`` gives the business date every command is judged against."""
    settings = settings or CounselingSettings()
    runtime = build_runtime(settings)
    app = runtime.http_app([api.router], title="Counseling service")
    app.state.clock = clock
    app.state.clients = ClientVault(runtime.cipher)
    app.state.notes = NotesVault(settings.notes_key_ring())
    app.state.audit = AuditTrail(runtime.engine)
    return app
