"""case_prefixes: which station each case-number prefix belongs to, for good.

Case numbers are counted per station and year, so a prefix shared by two stations issues one
number twice (and ``cases.case_number`` is unique). Every prefix a station has used or set is
kept here, owned by that station: another station can neither set it nor be given it as a
default. Filled from the prefixes set so far and from the numbers already issued (the first
owner of a prefix keeps it; a station that shared one gets a fresh default at its next intake).

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import UUID

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "case_prefixes",
        sa.Column("prefix", sa.Text, primary_key=True),
        sa.Column("union_id", UUID(as_uuid=True), nullable=False),
    )
    op.create_index("ix_case_prefixes_union_id", "case_prefixes", ["union_id"])
    op.execute(
        "INSERT INTO case_prefixes (prefix, union_id) "
        "SELECT case_prefix, union_id FROM stations ON CONFLICT DO NOTHING"
    )
    op.execute(
        "INSERT INTO case_prefixes (prefix, union_id) "
        "SELECT DISTINCT ON (p.prefix) p.prefix, p.station_union_id FROM ("
        "  SELECT split_part(case_number, '-', 1) AS prefix, station_union_id, received_on, case_number"
        "  FROM cases WHERE case_number <> ''"
        ") AS p ORDER BY p.prefix, p.received_on, p.case_number ON CONFLICT DO NOTHING"
    )


def downgrade() -> None:
    op.drop_index("ix_case_prefixes_union_id", table_name="case_prefixes")
    op.drop_table("case_prefixes")
