"""outbox_held: aggregates whose publishing is held back after Kafka refused one of their events.

Revision ID: 0003_outbox_held
Revises: 0002
"""

from alembic import op

from shared.migrations import create_outbox_held

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_outbox_held(op.get_bind())


def downgrade() -> None:
    op.drop_table("outbox_held")
