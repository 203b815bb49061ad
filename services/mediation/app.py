"""Wiring: the runtime (database, event store, relay, consumer of membership.events) and the app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.mediation import api
from services.mediation.handlers import MEMBER_STREAMS, MEMBERSHIP_REACTIONS
from services.mediation.projections import apply
from services.mediation.settings import MediationSettings
from services.mediation.vault import Vault
from shared.clock import Clock, beijing_today
from shared.contracts.mediation import registry
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: MediationSettings) -> ServiceRuntime:
    runtime = ServiceRuntime("mediation", settings, registry, migrations=MIGRATIONS, projections=(apply,))
    runtime.subscribe(
        runtime.consumer("unions", MEMBERSHIP_REACTIONS, follows=MEMBER_STREAMS),
        settings.membership_topic,
        background=True,
    )
    return runtime


def create_app(settings: MediationSettings | None = None, *, clock: Clock = beijing_today) -> FastAPI:
    """The mediation HTTP app; its lifespan migrates the database and runs relay and consumer.
    ``clock`` gives the Beijing business date every command is judged against."""
    settings = settings or MediationSettings()
    runtime = build_runtime(settings)
    app = runtime.http_app(api.ROUTERS, title="Mediation service")
    app.state.vault = Vault(runtime.cipher, settings.key_ring())
    app.state.clock = clock
    return app
