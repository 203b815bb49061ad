"""Confidential and personal data at rest: session notes under the notes key ring, a resident's
name and phone under the PII key, and the pseudonymous ``client_ref`` the events carry.

Nothing here logs, and nothing here raises with a value in its message.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from services.counseling import domain
from services.counseling import tables as t
from shared.contracts.counseling import ClientKind
from shared.crypto import FieldCipher, KeyRing

_MEMBER_REF = "counseling.client.member"
_RESIDENT_REF = "counseling.client.resident"


def _notes_context(appointment_id: uuid.UUID) -> str:
    """Bound into each ciphertext: notes copied onto another appointment do not decrypt."""
    return f"counseling.session_notes:{appointment_id}"


@dataclass(frozen=True)
class Contact:
    full_name: str
    phone: str


class ClientVault:
    def __init__(self, cipher: FieldCipher) -> None:
        self._cipher = cipher

    def member(self, member_id: uuid.UUID) -> domain.Client:
        return domain.Client(self._cipher.blind_index(str(member_id), _MEMBER_REF), ClientKind.MEMBER)

    def resident(self, phone: str) -> domain.Client:
        """One resident, one reference: keyed by the normalised phone number."""
        return domain.Client(
            self._cipher.blind_index(domain.normalize_phone(phone), _RESIDENT_REF), ClientKind.RESIDENT
        )

    async def keep_member(self, conn: AsyncConnection, client: domain.Client, member_id: uuid.UUID) -> None:
        await conn.execute(
            insert(t.clients)
            .values(client_ref=client.ref, kind=client.kind.value, member_id=member_id)
            .on_conflict_do_nothing()
        )

    async def keep_resident(self, conn: AsyncConnection, client: domain.Client, contact: Contact) -> None:
        """The latest name and phone given for this resident, encrypted."""
        values = {
            "full_name_enc": self._cipher.encrypt(contact.full_name, f"clients.full_name:{client.ref}"),
            "phone_enc": self._cipher.encrypt(contact.phone, f"clients.phone:{client.ref}"),
        }
        statement = insert(t.clients).values(client_ref=client.ref, kind=client.kind.value, **values)
        await conn.execute(statement.on_conflict_do_update(index_elements=["client_ref"], set_=values))

    def contact(self, row: sa.RowMapping) -> Contact | None:
        if row["full_name_enc"] is None or row["phone_enc"] is None:
            return None
        ref = row["client_ref"]
        return Contact(
            self._cipher.decrypt(row["full_name_enc"], f"clients.full_name:{ref}"),
            self._cipher.decrypt(row["phone_enc"], f"clients.phone:{ref}"),
        )

    async def remark(self, conn: AsyncConnection, appointment_id: uuid.UUID, action: str, text: str) -> None:
        await conn.execute(
            sa.insert(t.appointment_remarks).values(
                appointment_id=appointment_id,
                action=action,
                remark_enc=self._cipher.encrypt(text, f"appointment_remarks:{appointment_id}"),
            )
        )


class NotesVault:
    """Session notes, AES-GCM under the current key of the ring; older keys still decrypt."""

    def __init__(self, ring: KeyRing) -> None:
        self.ring = ring

    async def write(
        self, conn: AsyncConnection, appointment_id: uuid.UUID, notes: str, written_by: str
    ) -> None:
        sealed = self.ring.encrypt(notes, _notes_context(appointment_id))
        await conn.execute(
            sa.insert(t.session_notes).values(
                appointment_id=appointment_id,
                notes=sealed,
                key_id=self.ring.key_of(sealed),
                written_by=written_by,
            )
        )

    async def read(self, conn: AsyncConnection, appointment_id: uuid.UUID) -> str | None:
        """The plaintext: call only after the read is on the audit trail."""
        sealed = (
            await conn.execute(
                sa.select(t.session_notes.c.notes).where(t.session_notes.c.appointment_id == appointment_id)
            )
        ).scalar_one_or_none()
        return None if sealed is None else self.ring.decrypt(sealed, _notes_context(appointment_id))

    async def reencrypt(self, engine: AsyncEngine, *, batch: int = 200) -> int:
        """Rewrite every note not under the current key with it; returns how many were rewritten.

        Batches of ``batch`` rows, each in its own short transaction (``SKIP LOCKED``: two runs
        at once share the work). Safe to interrupt and run again."""
        done = 0
        table = t.session_notes
        while True:
            async with engine.begin() as conn:
                rows = (
                    await conn.execute(
                        sa.select(table.c.appointment_id, table.c.notes)
                        .where(table.c.key_id != self.ring.current)
                        .limit(batch)
                        .with_for_update(skip_locked=True)
                    )
                ).all()
                for appointment_id, sealed in rows:
                    rotated = self.ring.rotate(sealed, _notes_context(appointment_id))
                    await conn.execute(
                        sa.update(table)
                        .where(table.c.appointment_id == appointment_id)
                        .values(notes=rotated, key_id=self.ring.key_of(rotated))
                    )
            done += len(rows)
            if len(rows) < batch:
                return done

    async def keys_in_use(self, conn: AsyncConnection) -> dict[str, int]:
        table = t.session_notes
        rows = await conn.execute(sa.select(table.c.key_id, sa.func.count()).group_by(table.c.key_id))
        return {key_id: count for key_id, count in rows.all()}
