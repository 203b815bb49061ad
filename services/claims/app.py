"""Wiring of the claims service: settings, runtime, consumer of membership.events, HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import Field

from services.claims import api, handlers
from services.claims.projections import inline_projection
from shared.clock import Clock, beijing_today
from shared.contracts import claims as contract
from shared.contracts import membership
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class ClaimsSettings(ServiceSettings):
    """Environment: CLAIMS_DATABASE_URL, CLAIMS_DATABASE_PASSWORD, CLAIMS_HOST, CLAIMS_PORT (8002),
    CLAIMS_TOPIC (claims.events), CLAIMS_MEMBERSHIP_TOPIC (membership.events), and the common
    KAFKA_BOOTSTRAP_SERVERS and UNION_* ones."""

    service = "claims"
    default_port = 8002

    membership_topic: str = Field(default=membership.TOPIC, validation_alias="CLAIMS_MEMBERSHIP_TOPIC")


def build_runtime(settings: ClaimsSettings | None = None, *, clock: Clock = beijing_today) -> ServiceRuntime:
    """``clock`` gives the business date ("today") claims are filed, decided and paid on."""
    settings = settings or ClaimsSettings()
    runtime = ServiceRuntime(
        name="claims",
        settings=settings,
        registry=contract.registry,
        migrations=MIGRATIONS,
        projections=(inline_projection,),
        clock=clock,
    )
    # Every membership type has its reaction; a type newer than this release still advances
    # the member's stream version (``handlers.on_newer_member_event``, the table's
    # ``unregistered`` handler).
    coverage = runtime.consumer("coverage", handlers.reactions(clock), locks=handlers.coverage_locks)
    runtime.subscribe(coverage, settings.membership_topic)
    return runtime


def create_app(settings: ClaimsSettings | None = None, *, clock: Clock = beijing_today) -> FastAPI:
    """The claims HTTP app; its lifespan migrates the database and runs relay and consumer."""
    return build_runtime(settings, clock=clock).http_app([api.router], title="Claims service")
