"""access_audit: who read an injury report's health details, and who was refused (the shared
append-only trail, shared/audit.py).

Revision ID: 0005
Revises: 0004
"""

from alembic import op

from shared.audit import create_audit_table, drop_audit_table

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_table(op.get_bind())


def downgrade() -> None:
    drop_audit_table(op.get_bind())
