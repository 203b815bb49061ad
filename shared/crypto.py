"""Personal identifiers at rest: AES-GCM for values we must read back, HMAC for lookups."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives.ciphers.aead import AESGCM


class FieldCipher:
    """Encrypts one field value; ``context`` (e.g. the column name) is bound as associated data,
    so a ciphertext copied into another column does not decrypt."""

    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("key must be 32 bytes")
        self._aead = AESGCM(hashlib.sha256(b"enc:" + key).digest())
        self._mac_key = hashlib.sha256(b"mac:" + key).digest()

    def encrypt(self, plaintext: str, context: str) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return base64.b64encode(nonce + sealed).decode()

    def decrypt(self, token: str, context: str) -> str:
        raw = base64.b64decode(token)
        return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()

    def blind_index(self, value: str, context: str) -> str:
        """Deterministic keyed hash: find "the member with this national ID" without storing it."""
        return hmac.new(self._mac_key, f"{context}:{value}".encode(), hashlib.sha256).hexdigest()


def mask(value: str, visible: int = 4) -> str:
    """``110101199001011234`` -> ``**************1234``."""
    if len(value) <= visible:
        return "*" * len(value)
    return "*" * (len(value) - visible) + value[-visible:]
