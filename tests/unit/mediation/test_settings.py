"""Mediation settings: the minutes' key ring, and production refusing the local one."""

from __future__ import annotations

import base64
import json
import os

import pytest

from services.mediation.settings import MediationSettings


def test_local_key_ring_encrypts_and_decrypts() -> None:
    ring = MediationSettings().key_ring()
    token = ring.encrypt("minutes", "minutes:s")
    assert token.startswith("local:") and ring.decrypt(token, "minutes:s") == "minutes"


def test_a_rotated_ring_still_reads_old_minutes() -> None:
    old = MediationSettings().key_ring()
    token = old.encrypt("minutes", "minutes:s")
    keys = {
        "local": json.loads(MediationSettings().minutes_keys)["local"],
        "k2": base64.b64encode(os.urandom(32)).decode(),
    }
    new = MediationSettings(MEDIATION_MINUTES_KEYS=json.dumps(keys), MEDIATION_MINUTES_KEY_ID="k2").key_ring()
    assert new.decrypt(token, "minutes:s") == "minutes" and new.rotate(token, "minutes:s").startswith("k2:")


def test_production_refuses_the_local_minutes_key() -> None:
    with pytest.raises(ValueError, match="MEDIATION_MINUTES_KEYS"):
        MediationSettings(
            mode="production",
            api_tokens=json.dumps({"a" * 20 + "Zq9xW3vB7nM2kL5pR8tY": "staff"}),
            metrics_token="m" * 10 + "Zq9xW3vB7nM2kL5pR8tY",
            pii_key=base64.b64encode(os.urandom(32)).decode(),
            MEDIATION_DATABASE_URL="postgresql+asyncpg://mediation:s3cret@db/mediation",
        )
