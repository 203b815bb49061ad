"""coverage_enrollments.recorded_on: the day membership recorded an enrolment (no backdating:
it never covers an injury reported before that day).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("coverage_enrollments", sa.Column("recorded_on", sa.Date, nullable=True))


def downgrade() -> None:
    op.drop_column("coverage_enrollments", "recorded_on")
