"""events.traceparent / events.tracestate: events.trace_context's values as plain text, filled by
a trigger on insert, so Debezium's outbox router can place them as the ``traceparent``/
``tracestate`` Kafka headers the relay sends (shared/tables.py, deploy/k8s/cdc/connectors.yaml).

Revision ID: 0005
Revises: 0004
"""

from shared.migrations import add_trace_header_columns, drop_trace_header_columns

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    add_trace_header_columns()


def downgrade() -> None:
    drop_trace_header_columns()
