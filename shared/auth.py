"""Bearer tokens mapped to roles; every /v1 route declares the roles it admits."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from fastapi import Request

from shared.http import ProblemError


class Role(StrEnum):
    STAFF = "staff"
    COUNSELOR = "counselor"
    SUPERVISOR = "supervisor"
    INTEGRATOR = "integrator"  # read-only


@dataclass(frozen=True)
class Principal:
    subject: str
    role: Role


class TokenAuthority:
    def __init__(self, tokens: dict[str, str]) -> None:
        self._tokens = {t: Role(r) for t, r in tokens.items()}

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ProblemError(
                401, "Unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        presented = authorization[7:].strip()
        for token, role in self._tokens.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                # The subject is a fingerprint, so logs can tell callers apart without the token.
                digest = hashlib.sha256(token.encode()).hexdigest()[:8]
                return Principal(subject=f"{role}:{digest}", role=role)
        raise ProblemError(
            401, "Unauthorized", "unknown bearer token", headers={"WWW-Authenticate": "Bearer"}
        )


def require(*roles: Role) -> Callable[[Request], Coroutine[Any, Any, Principal]]:
    """FastAPI dependency: the caller must present a token with one of ``roles``."""
    allowed = frozenset(roles)

    async def dependency(request: Request) -> Principal:
        authority: TokenAuthority = request.app.state.auth
        principal = authority.authenticate(request.headers.get("authorization"))
        if principal.role not in allowed:
            raise ProblemError(403, "Forbidden", f"role {principal.role} may not do this")
        return principal

    return dependency


READERS = (Role.STAFF, Role.SUPERVISOR, Role.INTEGRATOR)
WRITERS = (Role.STAFF, Role.SUPERVISOR)
