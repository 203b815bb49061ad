"""Mediation settings: the common ones (``shared.settings``), the membership topic we consume and
the keys of the minutes' KeyRing."""

from __future__ import annotations

import json

from pydantic import Field

from shared.contracts import membership
from shared.crypto import KeyRing
from shared.settings import LOCAL_KEY, ServiceSettings

#: The development key ring: the documented local key under id ``local``.
LOCAL_MINUTES_KEYS = json.dumps({"local": LOCAL_KEY})


class MediationSettings(ServiceSettings):
    """Environment: MEDIATION_DATABASE_URL, MEDIATION_HOST, MEDIATION_PORT (8005),
    MEDIATION_TOPIC (mediation.events), MEDIATION_MEMBERSHIP_TOPIC (membership.events),
    MEDIATION_MINUTES_KEYS (JSON {key id: base64 of 32 bytes}), MEDIATION_MINUTES_KEY_ID (the
    current key), KAFKA_BOOTSTRAP_SERVERS, UNION_MODE, UNION_API_TOKENS, UNION_PII_KEY."""

    service = "mediation"
    default_port = 8005

    membership_topic: str = Field(default=membership.TOPIC, validation_alias="MEDIATION_MEMBERSHIP_TOPIC")
    minutes_keys: str = Field(
        default=LOCAL_MINUTES_KEYS, validation_alias="MEDIATION_MINUTES_KEYS", repr=False
    )
    minutes_key_id: str = Field(default="local", validation_alias="MEDIATION_MINUTES_KEY_ID")

    def key_ring(self) -> KeyRing:
        raw = json.loads(self.minutes_keys)
        if not isinstance(raw, dict):
            raise ValueError("MEDIATION_MINUTES_KEYS must be a JSON object {key id: base64 key}")
        return KeyRing({str(k): self.key_bytes(str(v)) for k, v in raw.items()}, self.minutes_key_id)

    def _production_problems(self) -> list[str]:
        problems = super()._production_problems()
        if LOCAL_KEY in self.minutes_keys:
            problems.append("MEDIATION_MINUTES_KEYS must not hold the local development key")
        return problems
