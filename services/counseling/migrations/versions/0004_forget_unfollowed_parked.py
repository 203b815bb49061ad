"""The members consumer follows Member streams only (issue 8): drop its parked events of
other streams, which could never be released now (``shared.migrations``).

Revision ID: 0004
Revises: 0003
"""

from shared.migrations import forget_parked_of_unfollowed_streams

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    forget_parked_of_unfollowed_streams("members", ("Member",))


def downgrade() -> None:
    """Nothing to restore: the rows dropped could never have been applied."""
