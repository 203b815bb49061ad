"""Wiring: the runtime (database, event store, relay, consumers of claims, activities and mediation events)
and the HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from services.membership import api
from services.membership.activity_timeline import ACTIVITY_REACTIONS
from services.membership.handlers import claim_reactions
from services.membership.mediation_timeline import MEDIATION_REACTIONS
from services.membership.projections import apply
from services.membership.settings import MembershipSettings
from services.membership.vault import Vault
from shared.audit import AuditTrail
from shared.clock import Clock, beijing_today
from shared.contracts.membership import registry
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"


def build_runtime(settings: MembershipSettings, *, clock: Clock = beijing_today) -> ServiceRuntime:
    runtime = ServiceRuntime(
        "membership",
        settings,
        registry,
        migrations=MIGRATIONS,
        projections=(apply,),
        clock=clock,
    )
    runtime.subscribe(runtime.consumer("claims", claim_reactions), settings.claims_topic, background=True)
    runtime.subscribe(
        runtime.consumer("activities", ACTIVITY_REACTIONS), settings.activities_topic, background=True
    )
    runtime.subscribe(
        runtime.consumer("mediation", MEDIATION_REACTIONS), settings.mediation_topic, background=True
    )
    return runtime


def create_app(settings: MembershipSettings | None = None, *, clock: Clock = beijing_today) -> FastAPI:
    """The membership HTTP app; its lifespan migrates the database and runs relay and consumer.
    ``clock`` gives the business date ("today") every command is judged against."""
    settings = settings or MembershipSettings()
    runtime = build_runtime(settings, clock=clock)
    app = runtime.http_app(api.ROUTERS, title="Membership service")
    app.state.vault = Vault(runtime.cipher)
    app.state.audit = AuditTrail(runtime.engine)
    return app
