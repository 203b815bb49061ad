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
from shared.settings import Grant


class Role(StrEnum):
    STAFF = "staff"
    COUNSELOR = "counselor"
    SUPERVISOR = "supervisor"
    INTEGRATOR = "integrator"  # read-only


@dataclass(frozen=True)
class Principal:
    """The caller. ``subject`` is the grant's subject (``counselor-1``) or, without one, a
    fingerprint of the token, so logs and audit trails tell callers apart without the token."""

    subject: str
    role: Role
    #: The union a station-bound token is for; None for federation-wide staff.
    union_id: str | None = None


class TokenAuthority:
    def __init__(self, tokens: dict[str, str] | dict[str, Grant]) -> None:
        self._grants = {t: g if isinstance(g, Grant) else Grant(g) for t, g in tokens.items()}
        self._principals = {t: self._principal(t, g) for t, g in self._grants.items()}

    @staticmethod
    def _principal(token: str, grant: Grant) -> Principal:
        role = Role(grant.role)
        subject = grant.subject or f"{role}:{hashlib.sha256(token.encode()).hexdigest()[:8]}"
        return Principal(subject=subject, role=role, union_id=grant.union_id)

    def authenticate(self, authorization: str | None) -> Principal:
        if not authorization or not authorization.lower().startswith("bearer "):
            raise ProblemError(
                401, "Unauthorized", "missing bearer token", headers={"WWW-Authenticate": "Bearer"}
            )
        presented = authorization[7:].strip()
        for token, principal in self._principals.items():
            if hmac.compare_digest(token.encode(), presented.encode()):
                return principal
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
