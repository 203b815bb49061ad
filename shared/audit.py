"""Who read confidential text, and who was refused: one append-only trail for every service.

Counselling notes, mediation minutes and the details of an injury report are read through
``AuditTrail.record`` first. The entry commits in its own transaction *before* anything is
revealed, so a refused read (403) is on record even though its request fails, and a read that
is answered is never missing from the trail. The table refuses UPDATE and DELETE.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from shared.auth import Principal

audit_metadata = sa.MetaData()

access_audit = sa.Table(
    "access_audit",
    audit_metadata,
    sa.Column("position", sa.BigInteger, sa.Identity(always=False), primary_key=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    #: What was asked for, e.g. ("appointment_notes", <appointment id>).
    sa.Column("resource_type", sa.Text, nullable=False),
    sa.Column("resource_id", sa.Text, nullable=False),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("allowed", sa.Boolean, nullable=False),
    #: Why a read was refused (never the confidential text itself).
    sa.Column("reason", sa.Text, nullable=True),
    sa.Index("access_audit_resource", "resource_type", "resource_id", "position"),
)

#: The trail is evidence: nobody, not even the service, rewrites it.
APPEND_ONLY_DDL = (
    """
    CREATE OR REPLACE FUNCTION access_audit_append_only() RETURNS trigger
    LANGUAGE plpgsql AS $$
    BEGIN
        RAISE EXCEPTION 'access_audit is append-only';
    END $$
    """,
    """
    CREATE TRIGGER access_audit_append_only BEFORE UPDATE OR DELETE ON access_audit
    FOR EACH STATEMENT EXECUTE FUNCTION access_audit_append_only()
    """,
)


def create_audit_table(bind: sa.engine.Connection) -> None:
    """Called from the migration of each service that keeps confidential text. The DDL is
    written here once; a later change to the trail is a new function, never an edit of this."""
    audit_metadata.create_all(bind)
    for ddl in APPEND_ONLY_DDL:
        bind.execute(sa.text(ddl))


def drop_audit_table(bind: sa.engine.Connection) -> None:
    bind.execute(sa.text("DROP TABLE IF EXISTS access_audit"))
    bind.execute(sa.text("DROP FUNCTION IF EXISTS access_audit_append_only()"))


@dataclass(frozen=True)
class AuditEntry:
    at: datetime
    resource_type: str
    resource_id: str
    action: str
    subject: str
    role: str
    allowed: bool
    reason: str | None

    def as_json(self) -> dict[str, Any]:
        return {
            "at": self.at.isoformat(),
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "action": self.action,
            "subject": self.subject,
            "role": self.role,
            "allowed": self.allowed,
            "reason": self.reason,
        }


class AuditTrail:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def record(
        self,
        principal: Principal,
        *,
        resource_type: str,
        resource_id: str,
        action: str,
        allowed: bool,
        reason: str | None = None,
    ) -> None:
        """Commit one entry now, in its own transaction (call it before revealing anything)."""
        async with self._engine.begin() as conn:
            await conn.execute(
                sa.insert(access_audit).values(
                    resource_type=resource_type,
                    resource_id=resource_id,
                    action=action,
                    subject=principal.subject,
                    role=str(principal.role),
                    allowed=allowed,
                    reason=reason,
                )
            )

    @staticmethod
    async def entries(
        conn: AsyncConnection,
        *,
        resource_type: str | None = None,
        resource_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Oldest first."""
        query = sa.select(access_audit).order_by(access_audit.c.position).limit(limit).offset(offset)
        if resource_type is not None:
            query = query.where(access_audit.c.resource_type == resource_type)
        if resource_id is not None:
            query = query.where(access_audit.c.resource_id == resource_id)
        rows = (await conn.execute(query)).mappings()
        return [
            AuditEntry(
                at=r["at"],
                resource_type=r["resource_type"],
                resource_id=r["resource_id"],
                action=r["action"],
                subject=r["subject"],
                role=r["role"],
                allowed=r["allowed"],
                reason=r["reason"],
            )
            for r in rows
        ]
