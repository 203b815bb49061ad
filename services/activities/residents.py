"""Residents' names and phones: encrypted at rest, known elsewhere only by ``resident_ref``.

``resident_ref`` is a keyed hash of the normalised phone number: the same resident registering
twice for one activity is recognised (and refused), their participation can be counted, and
nobody without the service key can turn the reference back into a phone number. Name and phone
are AES-GCM encrypted with the registration's id bound in, never in an event, a log line or an
error message; answers only ever show the phone masked.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.activities.tables import resident_contacts
from shared.crypto import FieldCipher, mask

_INSERT = pg_insert(resident_contacts).on_conflict_do_nothing()


@dataclass(frozen=True)
class Contact:
    resident_ref: str
    full_name: str
    masked_phone: str


def normalised_phone(phone: str) -> str:
    return re.sub(r"[^0-9]", "", phone)


class Residents:
    def __init__(self, cipher: FieldCipher) -> None:
        self._cipher = cipher

    def ref(self, phone: str) -> str:
        return "res_" + self._cipher.blind_index(normalised_phone(phone), "activities.resident")[:32]

    def fingerprint(self, value: str) -> str:
        """For what must be compared but not kept (the idempotency record's request hash)."""
        return self._cipher.blind_index(value, "fingerprint.activities.resident")

    async def record(
        self, conn: AsyncConnection, registration_id: uuid.UUID, ref: str, full_name: str, phone: str
    ) -> None:
        rid = str(registration_id)
        await conn.execute(
            _INSERT,
            {
                "registration_id": registration_id,
                "resident_ref": ref,
                "full_name_enc": self._cipher.encrypt(full_name, f"resident.full_name:{rid}"),
                "phone_enc": self._cipher.encrypt(phone, f"resident.phone:{rid}"),
            },
        )

    async def contact(self, conn: AsyncConnection, registration_id: uuid.UUID) -> Contact | None:
        row = (
            (
                await conn.execute(
                    sa.select(resident_contacts).where(resident_contacts.c.registration_id == registration_id)
                )
            )
            .mappings()
            .first()
        )
        if row is None:
            return None
        rid = str(registration_id)
        return Contact(
            resident_ref=row["resident_ref"],
            full_name=self._cipher.decrypt(row["full_name_enc"], f"resident.full_name:{rid}"),
            masked_phone=mask(self._cipher.decrypt(row["phone_enc"], f"resident.phone:{rid}")),
        )
