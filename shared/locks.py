"""PostgreSQL advisory lock namespaces.

Every advisory lock takes the two-integer form ``(namespace, hashtext(name))``: a caller-chosen
string (an Idempotency-Key, a member id) can then never hash onto the relay's leader lock or the
migration lock, whose namespaces differ (the two-integer and one-integer forms never collide either).
"""

from __future__ import annotations

from enum import IntEnum


class LockSpace(IntEnum):
    MIGRATIONS = 1
    RELAY_LEADER = 2
    IDEMPOTENCY_KEY = 3
    MEMBER = 4
    #: Shared by every reaction that reads the plan catalogue; exclusive while a plan changes.
    CATALOGUE = 5
    #: One activity's places (activities service): every command on it serialises here.
    ACTIVITY = 6
    #: A station's mediation room (mediation): bookings serialise here, so back-to-back bookings
    #: sent at once all succeed instead of exhausting their optimistic retries.
    ROOM = 7
    #: One counsellor's slots (counseling), for the same reason.
    COUNSELOR = 8


def xact_lock_sql(space: LockSpace, param: str = ":name") -> str:
    """SQL taking a transaction-scoped lock on ``(space, hashtext(param))``."""
    return f"SELECT pg_advisory_xact_lock({int(space)}, hashtext({param}))"
