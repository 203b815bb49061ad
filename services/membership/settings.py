"""Membership settings: the common ones (``shared.settings``) plus the claims topic we consume."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field

from shared.settings import CommonSettings, service_settings

if TYPE_CHECKING:  # what service_settings() adds, spelled out for the type checker

    class _ServiceSettings(CommonSettings):
        database_url: str
        port: int
        host: str
        topic: str

else:
    _ServiceSettings = service_settings("membership", 8001)


class MembershipSettings(_ServiceSettings):
    """Environment: MEMBERSHIP_DATABASE_URL, MEMBERSHIP_HOST, MEMBERSHIP_PORT (8001),
    MEMBERSHIP_TOPIC (membership.events), MEMBERSHIP_CLAIMS_TOPIC (claims.events),
    MEMBERSHIP_ACTIVITIES_TOPIC (activities.events),
    KAFKA_BOOTSTRAP_SERVERS, UNION_MODE, UNION_API_TOKENS, UNION_PII_KEY, UNION_LOG_LEVEL."""

    claims_topic: str = Field(default="claims.events", validation_alias="MEMBERSHIP_CLAIMS_TOPIC")
    activities_topic: str = Field(default="activities.events", validation_alias="MEMBERSHIP_ACTIVITIES_TOPIC")
