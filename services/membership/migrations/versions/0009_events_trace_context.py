"""events.trace_context: the W3C trace context current when the event was appended, which the
relay sends on as the event's ``traceparent`` Kafka header (shared/tracing.py). NULL while
tracing is off, and for every event stored before this revision.

A database made from this revision on already has the column (the first revision creates the
core tables from shared/tables.py), hence IF NOT EXISTS.

Revision ID: 0009
Revises: 0008
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE events ADD COLUMN IF NOT EXISTS trace_context jsonb")


def downgrade() -> None:
    op.execute("ALTER TABLE events DROP COLUMN IF EXISTS trace_context")
