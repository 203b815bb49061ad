"""Wiring: the runtime (database, event store, relay, claims consumer) and the HTTP app."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

from fastapi import FastAPI

from services.membership import api
from services.membership.activity_timeline import ACTIVITY_REACTIONS
from services.membership.handlers import CLAIM_REACTIONS
from services.membership.projections import apply
from services.membership.settings import MembershipSettings
from services.membership.vault import Vault
from shared.contracts.membership import registry
from shared.runtime import ServiceRuntime

MIGRATIONS = Path(__file__).parent / "migrations"
#: Business dates are Beijing dates (China keeps UTC+8 all year, no daylight saving).
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")


def beijing_today() -> date:
    return datetime.now(BEIJING).date()


def build_runtime(settings: MembershipSettings) -> ServiceRuntime:
    runtime = ServiceRuntime(
        "membership",
        settings,
        registry,
        migrations=MIGRATIONS,
        projections=(apply,),
    )
    runtime.subscribe(runtime.consumer("claims", CLAIM_REACTIONS), settings.claims_topic)
    runtime.subscribe(runtime.consumer("activities", ACTIVITY_REACTIONS), settings.activities_topic)
    return runtime


def create_app(
    settings: MembershipSettings | None = None, *, clock: Callable[[], date] = beijing_today
) -> FastAPI:
    """The membership HTTP app; its lifespan migrates the database and runs relay and consumer.
    ``clock`` gives the business date ("today") every command is judged against."""
    settings = settings or MembershipSettings()
    runtime = build_runtime(settings)
    app = runtime.http_app(api.ROUTERS, title="Membership service")
    app.state.vault = Vault(runtime.cipher)
    app.state.clock = clock
    return app
