"""Consumer order tables (per-stream positions, parked early events) and each plan's stream version.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from shared.migrations import create_consumer_tables, drop_consumer_tables

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    create_consumer_tables(op.get_bind())
    op.add_column("plans", sa.Column("version", sa.Integer, nullable=False, server_default="0"))
    # Plans edited before this revision: their stream's version is in the event store.
    op.execute(
        "UPDATE plans SET version = v.version FROM "
        "(SELECT stream_id, max(version) AS version FROM events"
        " WHERE stream_type = 'Plan' GROUP BY stream_id) v "
        "WHERE plans.code = v.stream_id"
    )


def downgrade() -> None:
    op.drop_column("plans", "version")
    drop_consumer_tables(op.get_bind())
