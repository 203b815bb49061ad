"""member_identities.phone_index: the phone's blind index, kept up to date by phone changes.

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
    op.add_column("member_identities", sa.Column("phone_index", sa.Text, nullable=True))
    op.create_index("ix_member_identities_phone_index", "member_identities", ["phone_index"])


def downgrade() -> None:
    op.drop_index("ix_member_identities_phone_index", table_name="member_identities")
    op.drop_column("member_identities", "phone_index")
