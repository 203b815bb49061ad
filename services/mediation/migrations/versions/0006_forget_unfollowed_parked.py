"""The unions consumer follows Union and Member streams only (issue 8): drop its parked events of
other streams, which could never be released now (``shared.migrations``).

Revision ID: 0006
Revises: 0005
"""

from shared.migrations import forget_parked_of_unfollowed_streams

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    forget_parked_of_unfollowed_streams("unions", ("Union", "Member"))


def downgrade() -> None:
    """Nothing to restore: the rows dropped could never have been applied."""
