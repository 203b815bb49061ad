"""Counseling settings: the common ones plus the membership topic and the notes key ring."""

from __future__ import annotations

import base64
import binascii
import json

from pydantic import Field

from shared.crypto import KeyRing
from shared.settings import LOCAL_KEY, ServiceSettings

#: A notes key everybody knows (it is in the source): local runs only, refused in production.
LOCAL_NOTES_KEY_ID = "local-1"
LOCAL_NOTES_KEY = base64.b64encode(b"local-counseling-notes-key-32byt").decode()
LOCAL_NOTES_KEYS = json.dumps({LOCAL_NOTES_KEY_ID: LOCAL_NOTES_KEY})


class CounselingSettings(ServiceSettings):
    """Environment: COUNSELING_DATABASE_URL, COUNSELING_HOST, COUNSELING_PORT (8004),
    COUNSELING_TOPIC (counseling.events), COUNSELING_MEMBERSHIP_TOPIC (membership.events),
    COUNSELING_NOTES_KEYS (JSON ``{"key id": "base64 of 32 bytes", ...}``: every key whose notes
    must stay readable), COUNSELING_NOTES_KEY_ID (the key new notes are written under), and the
    common UNION_* settings."""

    service = "counseling"
    default_port = 8004

    membership_topic: str = Field(default="membership.events", validation_alias="COUNSELING_MEMBERSHIP_TOPIC")
    notes_keys: str = Field(default=LOCAL_NOTES_KEYS, validation_alias="COUNSELING_NOTES_KEYS", repr=False)
    notes_key_id: str = Field(default=LOCAL_NOTES_KEY_ID, validation_alias="COUNSELING_NOTES_KEY_ID")

    def notes_key_ring(self) -> KeyRing:
        return KeyRing(self._notes_keys(), self.notes_key_id)

    def _notes_keys(self) -> dict[str, bytes]:
        """Parsed and checked; errors name the key id, never a key."""
        try:
            parsed = json.loads(self.notes_keys or LOCAL_NOTES_KEYS)
        except json.JSONDecodeError:
            raise ValueError("COUNSELING_NOTES_KEYS must be a JSON object of key id -> base64 key") from None
        if not isinstance(parsed, dict) or not parsed:
            raise ValueError("COUNSELING_NOTES_KEYS must be a non-empty JSON object of key id -> base64 key")
        keys: dict[str, bytes] = {}
        for key_id, value in parsed.items():
            try:
                raw = base64.b64decode(str(value), validate=True)
            except (binascii.Error, ValueError):
                raw = b""
            if len(raw) != 32:
                raise ValueError(f"COUNSELING_NOTES_KEYS: key {key_id!r} must be base64 of exactly 32 bytes")
            keys[str(key_id)] = raw
        if self.notes_key_id not in keys:
            raise ValueError(f"COUNSELING_NOTES_KEY_ID {self.notes_key_id!r} is not in COUNSELING_NOTES_KEYS")
        return keys

    def _production_problems(self) -> list[str]:
        problems = list(super()._production_problems())
        try:
            keys = self._notes_keys()
        except ValueError as exc:
            return [*problems, str(exc)]
        local = {base64.b64decode(LOCAL_NOTES_KEY), base64.b64decode(LOCAL_KEY)}
        if any(raw in local for raw in keys.values()):
            problems.append("COUNSELING_NOTES_KEYS must not hold a local development key")
        if self.pii_key and any(raw == _b64_or_empty(self.pii_key) for raw in keys.values()):
            problems.append("COUNSELING_NOTES_KEYS must not reuse UNION_PII_KEY")
        if len(set(keys.values())) != len(keys):
            problems.append("COUNSELING_NOTES_KEYS holds the same key under two ids")
        return problems


def _b64_or_empty(value: str) -> bytes:
    try:
        return base64.b64decode(value)
    except (binascii.Error, ValueError):
        return b""
