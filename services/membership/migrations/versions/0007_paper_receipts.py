"""paper_receipts: the receipt (reference, payment day, who recorded it) of each enrolment a
supervisor recorded late from paper. The reference never goes on Kafka, so this is its only copy.

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "paper_receipts",
        sa.Column("enrollment_id", UUID(as_uuid=True), primary_key=True),
        sa.Column("member_id", UUID(as_uuid=True), nullable=False),
        sa.Column("receipt_reference", sa.Text, nullable=False),
        sa.Column("receipt_key", sa.Text, nullable=True),
        sa.Column("released_on", sa.Date, nullable=True),
        sa.Column("paid_on", sa.Date, nullable=False),
        sa.Column("recorded_on", sa.Date, nullable=False),
        sa.Column("recorded_by", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
    )
    op.create_index("ix_paper_receipts_member_id", "paper_receipts", ["member_id"])
    op.create_index("ix_paper_receipts_receipt_key", "paper_receipts", ["receipt_key"], unique=True)


def downgrade() -> None:
    op.drop_index("ix_paper_receipts_receipt_key", table_name="paper_receipts")
    op.drop_index("ix_paper_receipts_member_id", table_name="paper_receipts")
    op.drop_table("paper_receipts")
