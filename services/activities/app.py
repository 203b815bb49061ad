"""Wiring of the activities service: settings, runtime, consumer of membership.events, HTTP app."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from pydantic import Field

from services.activities import api, handlers
from services.activities.handlers import Now, utc_now
from services.activities.projections import apply
from services.activities.residents import Residents
from shared.contracts import activities as contract
from shared.contracts import membership
from shared.runtime import ServiceRuntime
from shared.settings import ServiceSettings

MIGRATIONS = Path(__file__).parent / "migrations"


class ActivitiesSettings(ServiceSettings):
    """Environment: ACTIVITIES_DATABASE_URL, ACTIVITIES_HOST, ACTIVITIES_PORT (8003),
    ACTIVITIES_TOPIC (activities.events), ACTIVITIES_MEMBERSHIP_TOPIC (membership.events), and
    the common UNION_* settings."""

    service = "activities"
    default_port = 8003

    membership_topic: str = Field(default=membership.TOPIC, validation_alias="ACTIVITIES_MEMBERSHIP_TOPIC")


def build_runtime(settings: ActivitiesSettings | None = None, *, clock: Now = utc_now) -> ServiceRuntime:
    settings = settings or ActivitiesSettings()
    runtime = ServiceRuntime(
        name="activities",
        settings=settings,
        registry=contract.registry,
        migrations=MIGRATIONS,
        projections=(apply,),
    )
    members = runtime.consumer(
        "members",
        handlers.membership_reactions(clock),
        locks=handlers.member_locks,
        follows=handlers.MEMBER_STREAMS,
    )
    runtime.subscribe(members, settings.membership_topic, background=True)
    return runtime


def create_app(settings: ActivitiesSettings | None = None, *, clock: Now = utc_now) -> FastAPI:
    """The activities HTTP app; its lifespan migrates the database and runs relay and consumer.
    ``clock`` gives the instant every command (and the reaction to ``MemberLeft``) is judged at."""
    runtime = build_runtime(settings, clock=clock)
    app = runtime.http_app([api.router], title="Activities service")
    app.state.clock = clock
    app.state.residents = Residents(runtime.cipher)
    return app
