"""access_audit: who read an injury report's health details, and who was refused (the shared
append-only trail, shared/audit.py).

Revision ID: 0006
Revises: 0005
"""

from alembic import op

from shared.audit import create_audit_table, drop_audit_table

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_audit_table(op.get_bind())


def downgrade() -> None:
    drop_audit_table(op.get_bind())
