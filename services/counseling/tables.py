"""The counseling service's tables (the event store itself is in shared.tables).

Read models (rebuildable from this service's events): ``counselors``, ``slots``,
``appointments``; fed by membership.events: ``members``. Outside the events, and so not
rebuildable from them, the confidential and personal data: ``session_notes`` (the notes,
encrypted under the notes key ring), ``clients`` (a resident's name and phone, encrypted under
the PII key) and ``appointment_remarks`` (cancellation reasons, encrypted likewise).
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import UUID

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

counselors = sa.Table(
    "counselors",
    metadata,
    sa.Column("counselor_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("display_name", sa.Text, nullable=False),
    sa.Column("provider", sa.Text, nullable=False),
    sa.Column("subject", sa.Text, nullable=False),
    sa.Column("active", sa.Boolean, nullable=False),
    sa.Column("onboarded_on", sa.Date, nullable=False),
    sa.Column("deactivated_on", sa.Date, nullable=True),
    #: One active counsellor per token subject.
    sa.Index("counselors_active_subject", "subject", unique=True, postgresql_where=sa.text("active")),
)

slots = sa.Table(
    "slots",
    metadata,
    sa.Column("slot_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("counselor_id", UUID(as_uuid=True), nullable=False),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False),
    sa.Index("slots_counselor_starts", "counselor_id", "starts_at"),
)

appointments = sa.Table(
    "appointments",
    metadata,
    sa.Column("appointment_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("slot_id", UUID(as_uuid=True), nullable=False),
    sa.Column("counselor_id", UUID(as_uuid=True), nullable=False),
    sa.Column("client_ref", sa.Text, nullable=False),
    sa.Column("client_kind", sa.Text, nullable=False),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("starts_at", TS, nullable=False),
    sa.Column("ends_at", TS, nullable=False),
    sa.Column("booked_on", sa.Date, nullable=False),
    sa.Column("closed_on", sa.Date, nullable=True),
    sa.Column("cancelled_by", sa.Text, nullable=True),
    #: The guard of "one booking per slot": a second live appointment of a slot cannot commit,
    #: however many requests race for it (the domain's own check answers the ones that come later).
    sa.Index(
        "appointments_one_per_slot",
        "slot_id",
        unique=True,
        postgresql_where=sa.text("status <> 'cancelled'"),
    ),
    sa.Index("appointments_client", "client_ref"),
    sa.Index("appointments_starts", "starts_at"),
)

#: Members as membership.events told us (only what booking needs: no name, no contact).
members = sa.Table(
    "members",
    metadata,
    sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("union_id", UUID(as_uuid=True), nullable=True),
    sa.Column("active", sa.Boolean, nullable=False),
)

#: The client behind each ``client_ref``: for residents their name and phone, AES-GCM under the
#: PII key; for members only the member id (their contact details stay in membership's vault).
clients = sa.Table(
    "clients",
    metadata,
    sa.Column("client_ref", sa.Text, primary_key=True),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("member_id", UUID(as_uuid=True), nullable=True),
    sa.Column("full_name_enc", sa.Text, nullable=True),
    sa.Column("phone_enc", sa.Text, nullable=True),
)

#: Session notes: ``<key id>:<base64 AES-GCM>`` bound to the appointment id, under the notes key
#: ring (COUNSELING_NOTES_KEYS). ``key_id`` repeats the ring key so rotation finds old rows.
session_notes = sa.Table(
    "session_notes",
    metadata,
    sa.Column("appointment_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("notes", sa.Text, nullable=False),
    sa.Column("key_id", sa.Text, nullable=False),
    sa.Column("written_by", sa.Text, nullable=False),
    sa.Column("written_at", TS, nullable=False, server_default=sa.func.now()),
    sa.Index("session_notes_key", "key_id"),
)

#: A reason given when cancelling or recording a no-show (free text: encrypted, never an event).
appointment_remarks = sa.Table(
    "appointment_remarks",
    metadata,
    sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
    sa.Column("appointment_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("action", sa.Text, nullable=False),
    sa.Column("remark_enc", sa.Text, nullable=False),
    sa.Column("at", TS, nullable=False, server_default=sa.func.now()),
)

#: Tables the own-events projection owns (emptied and refilled by ``rebuild``).
OWN_READ_MODELS = (counselors, slots, appointments)
