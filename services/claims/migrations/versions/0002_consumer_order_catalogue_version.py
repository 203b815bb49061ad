"""Consumer order tables, and the version of its plan stream each plan row reflects.

A database migrated from 0001 has applied plan edits without recording their versions; reset the
``claims.coverage`` consumer (README, operations) to re-apply them, or reports made after
those edits will wait for them.

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


def downgrade() -> None:
    op.drop_column("plans", "version")
    drop_consumer_tables(op.get_bind())
