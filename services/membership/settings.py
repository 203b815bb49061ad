"""Membership settings: the common ones (``shared.settings``) plus the upstream topics we consume."""

from __future__ import annotations

from pydantic import Field

from shared.settings import ServiceSettings


class MembershipSettings(ServiceSettings):
    """Environment: MEMBERSHIP_DATABASE_URL, MEMBERSHIP_DATABASE_PASSWORD, MEMBERSHIP_HOST,
    MEMBERSHIP_PORT (8001), MEMBERSHIP_TOPIC (membership.events), MEMBERSHIP_CLAIMS_TOPIC
    (claims.events), MEMBERSHIP_ACTIVITIES_TOPIC (activities.events), MEMBERSHIP_MEDIATION_TOPIC
    (mediation.events), KAFKA_BOOTSTRAP_SERVERS,
    UNION_MODE, UNION_API_TOKENS, UNION_PII_KEY, UNION_LOG_LEVEL."""

    service = "membership"
    default_port = 8001

    claims_topic: str = Field(default="claims.events", validation_alias="MEMBERSHIP_CLAIMS_TOPIC")
    activities_topic: str = Field(default="activities.events", validation_alias="MEMBERSHIP_ACTIVITIES_TOPIC")
    mediation_topic: str = Field(default="mediation.events", validation_alias="MEMBERSHIP_MEDIATION_TOPIC")
