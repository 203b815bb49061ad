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


class KeyRing:
    """Confidential text under key rotation: new writes use the current key, every key still on
    the ring decrypts what it wrote. A ciphertext names its key (``<key id>:<base64>``), so a
    re-encryption command can find what is still under an old key without decrypting anything."""

    def __init__(self, keys: dict[str, bytes], current: str) -> None:
        if current not in keys:
            raise ValueError("the current key must be on the ring")
        if any(":" in key_id or not key_id for key_id in keys):
            raise ValueError("key ids are non-empty and contain no ':'")
        self.current = current
        self._ciphers = {key_id: FieldCipher(key) for key_id, key in keys.items()}

    def encrypt(self, plaintext: str, context: str) -> str:
        return f"{self.current}:{self._ciphers[self.current].encrypt(plaintext, context)}"

    def decrypt(self, token: str, context: str) -> str:
        key_id, _, sealed = token.partition(":")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise KeyError(f"ciphertext is under key {key_id!r}, which is not on the ring")
        return cipher.decrypt(sealed, context)

    def key_of(self, token: str) -> str:
        return token.partition(":")[0]

    def needs_rotation(self, token: str) -> bool:
        return self.key_of(token) != self.current

    def rotate(self, token: str, context: str) -> str:
        """The same plaintext under the current key (unchanged if it already is)."""
        return (
            token if not self.needs_rotation(token) else self.encrypt(self.decrypt(token, context), context)
        )
