"""Core event-sourcing tables, coverage and claims read models, the seeded plan catalogue.

Revision ID: 0001
Revises:
"""

from alembic import op

from services.claims.projections import default_plan_rows
from services.claims.tables import metadata, plans
from shared.migrations import create_core_tables, drop_core_tables

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    bind = op.get_bind()
    create_core_tables(bind)
    # A snapshot of today's tables is this revision's schema; later changes get revisions of their own.
    metadata.create_all(bind)
    op.bulk_insert(plans, default_plan_rows())


def downgrade() -> None:
    bind = op.get_bind()
    metadata.drop_all(bind)
    drop_core_tables(bind)
