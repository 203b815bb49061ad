"""The activities service's tables (the event store itself is in shared.tables)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB, UUID

metadata = sa.MetaData()
TS = sa.DateTime(timezone=True)

# --- fed by membership.events (not rebuilt from this service's own store) ----------------------

#: Members as this service last heard of them: who may register.
known_members = sa.Table(
    "known_members",
    metadata,
    sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("union_id", UUID(as_uuid=True), nullable=False),
    sa.Column("joined_on", sa.Date, nullable=False),
    sa.Column("left_on", sa.Date, nullable=True),
)

# --- residents' identities: encrypted, outside the rebuildable read models ------------------

resident_contacts = sa.Table(
    "resident_contacts",
    metadata,
    sa.Column("registration_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("resident_ref", sa.Text, nullable=False, index=True),
    sa.Column("full_name_enc", sa.Text, nullable=False),
    sa.Column("phone_enc", sa.Text, nullable=False),
)

# --- inline read models, from this service's own events ----------------------------------------

activities = sa.Table(
    "activities",
    metadata,
    sa.Column("activity_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("kind", sa.Text, nullable=False, index=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("starts_at", TS, nullable=False, index=True),
    sa.Column("ends_at", TS, nullable=False),
    sa.Column("venue", sa.Text, nullable=False),
    sa.Column("capacity", sa.Integer, nullable=False),
    sa.Column("audience", sa.Text, nullable=False),
    sa.Column("child_age_min", sa.Integer, nullable=True),
    sa.Column("child_age_max", sa.Integer, nullable=True),
    sa.Column("registration_opens_at", TS, nullable=True),
    sa.Column("registration_closes_at", TS, nullable=True),
    sa.Column("union_id", UUID(as_uuid=True), nullable=True, index=True),
    sa.Column("partner", JSONB, nullable=True),
    sa.Column("sessions", JSONB, nullable=False, server_default="[]"),
    sa.Column("status", sa.Text, nullable=False),
    sa.Column("registration_window_closed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("cancel_reason", sa.Text, nullable=True),
    sa.Column("updated_at", TS, nullable=False),
)

registrations = sa.Table(
    "registrations",
    metadata,
    sa.Column("registration_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("activity_id", UUID(as_uuid=True), nullable=False),
    sa.Column("session_id", UUID(as_uuid=True), nullable=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=True, index=True),
    sa.Column("resident_ref", sa.Text, nullable=True),
    sa.Column("member_union_id", UUID(as_uuid=True), nullable=True),
    sa.Column("status", sa.Text, nullable=False),
    #: The waitlisting event's version in the activity stream: FIFO order of the waitlist.
    sa.Column("waitlist_seq", sa.Integer, nullable=True),
    sa.Column("ever_waitlisted", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("ever_confirmed", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("children_ages", JSONB, nullable=False, server_default="[]"),
    sa.Column("registered_at", TS, nullable=False),
    sa.Column("checked_in_at", TS, nullable=True),
    sa.Column("cancelled_at", TS, nullable=True),
    sa.Column("cancel_reason", sa.Text, nullable=True),
    sa.Index("ix_registrations_activity", "activity_id", "status", "waitlist_seq"),
)

feedback = sa.Table(
    "feedback",
    metadata,
    sa.Column("registration_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("activity_id", UUID(as_uuid=True), nullable=False, index=True),
    sa.Column("rating", sa.Integer, nullable=False),
    sa.Column("comment", sa.Text, nullable=True),
    sa.Column("submitted_at", TS, nullable=False),
)

volunteers = sa.Table(
    "volunteers",
    metadata,
    sa.Column("activity_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("role", sa.Text, nullable=False),
    sa.Column("assigned_on", sa.Date, nullable=False),
)

interests = sa.Table(
    "interests",
    metadata,
    sa.Column("interest_id", UUID(as_uuid=True), primary_key=True),
    sa.Column("member_id", UUID(as_uuid=True), nullable=False),
    sa.Column("kind", sa.Text, nullable=False),
    sa.Column("registered_on", sa.Date, nullable=False),
    #: When it was registered (its event's time): who asked first is told first.
    sa.Column("registered_at", TS, nullable=False),
    #: The activity whose scheduling told this member; None while the interest is open.
    sa.Column("notified_activity_id", UUID(as_uuid=True), nullable=True),
    sa.Index("ix_interests_open", "kind", "member_id"),
)

READ_MODEL_TABLES = (activities, registrations, feedback, volunteers, interests)
