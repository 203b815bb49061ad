"""outbox_held: aggregates whose publishing is held back after Kafka refused one of their events.

Revision ID: 0002_outbox_held
Revises: 0001
"""

from alembic import op

from shared.migrations import create_outbox_held

revision = "0002_outbox_held"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_held(op.get_bind())


def downgrade() -> None:
    op.drop_table("outbox_held")
