"""Member-stream versions of the coverage facts (an enrolment's recording and cancellation, a
card's issue and cancellation, a leave), so a report is decided on what the member's stream held
at the report's ``member_version``: an enrolment recorded after the report the same day, or a
backdated fact recorded after it, no longer changes the decision with the order events arrive in.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

COLUMNS = {
    "coverage_members": ("left_version",),
    "coverage_cards": ("issued_version", "cancelled_version"),
    "coverage_enrollments": ("recorded_version", "cancelled_version"),
}


def upgrade() -> None:
    for table, columns in COLUMNS.items():
        for column in columns:
            op.add_column(table, sa.Column(column, sa.Integer, nullable=True))


def downgrade() -> None:
    for table, columns in COLUMNS.items():
        for column in columns:
            op.drop_column(table, column)
