"""coverage_enrollments.recorded_version: the enrolment's version in the member's stream, so an
enrolment recorded after a report on the same day is told apart from one recorded before it.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("coverage_enrollments", sa.Column("recorded_version", sa.Integer, nullable=True))


def downgrade() -> None:
    op.drop_column("coverage_enrollments", "recorded_version")
