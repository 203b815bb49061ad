"""Personal and health data that must never be in an event, a log line or an API answer in clear.

National ID, phone, the full card number and injury details are stored here, AES-GCM encrypted
(``shared.crypto.FieldCipher``) with the column *and the row's id* bound in as associated data,
so a ciphertext copied to another row does not decrypt. Uniqueness ("one member per national ID",
"one owner per card number") is enforced on a keyed blind index (HMAC), never on plaintext.
Answers only ever carry ``shared.crypto.mask``-ed values.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.membership.tables import card_numbers, injury_details, member_identities, paper_receipts
from shared import driver
from shared.aggregate import Conflict
from shared.crypto import FieldCipher, mask

#: Built once, reused compiled (every injury report runs it).
#: Every report writes it: sent to asyncpg directly (shared/driver.py).
_DETAILS_INSERT = (
    "INSERT INTO injury_details (report_id, member_id, description_enc, diagnosis_enc, hospital_enc) "
    "VALUES ($1, $2, $3, $4, $5)"
)


@dataclass(frozen=True)
class MaskedIdentity:
    national_id: str  # "**************1234"
    phone: str | None  # "*******5678"


@dataclass(frozen=True)
class InjuryDetails:
    description: str
    diagnosis: str
    hospital: str | None


class Vault:
    def __init__(self, cipher: FieldCipher) -> None:
        self._cipher = cipher

    # --- keyed fingerprints -------------------------------------------------------------------

    def national_id_index(self, national_id: str) -> str:
        return self._cipher.blind_index(national_id, "member.national_id")

    def phone_index(self, phone: str) -> str:
        return self._cipher.blind_index(phone, "member.phone")

    def fingerprint(self, value: str, context: str) -> str:
        """For anything that must be compared but not kept (e.g. an idempotency request hash)."""
        return self._cipher.blind_index(value, f"fingerprint.{context}")

    # --- identities ---------------------------------------------------------------------------

    async def record_identity(
        self, conn: AsyncConnection, member_id: str, national_id: str, phone: str | None
    ) -> None:
        """One member per national ID: a second one is a 409. Concurrent joins with the same ID
        serialise on the unique index; the loser sees the winner's row after it commits."""
        stored = await conn.scalar(
            pg_insert(member_identities)
            .values(
                member_id=uuid.UUID(member_id),
                national_id_index=self.national_id_index(national_id),
                national_id_enc=self._cipher.encrypt(national_id, f"member.national_id:{member_id}"),
                phone_enc=self._cipher.encrypt(phone, f"member.phone:{member_id}") if phone else None,
                phone_index=self.phone_index(phone) if phone else None,
            )
            .on_conflict_do_nothing(index_elements=[member_identities.c.national_id_index])
            .returning(member_identities.c.member_id)
        )
        if stored is None:
            existing = await self.member_with_national_id(conn, national_id)
            raise Conflict(
                f"a member with this national_id already exists (member {existing})",
                field="national_id",
                code="duplicate_national_id",
            )

    async def member_with_national_id(self, conn: AsyncConnection, national_id: str) -> str | None:
        found = await conn.scalar(
            sa.select(member_identities.c.member_id).where(
                member_identities.c.national_id_index == self.national_id_index(national_id)
            )
        )
        return str(found) if found else None

    async def phone_of(self, conn: AsyncConnection, member_id: uuid.UUID) -> str | None:
        """The phone on record (decrypted: the handler compares it with a new one)."""
        enc = await conn.scalar(
            sa.select(member_identities.c.phone_enc)
            .where(member_identities.c.member_id == member_id)
            .with_for_update()
        )
        return self._cipher.decrypt(enc, f"member.phone:{member_id}") if enc else None

    async def record_phone(self, conn: AsyncConnection, member_id: uuid.UUID, phone: str) -> None:
        """Re-encrypt the member's phone and update its blind index."""
        await conn.execute(
            sa.update(member_identities)
            .where(member_identities.c.member_id == member_id)
            .values(
                phone_enc=self._cipher.encrypt(phone, f"member.phone:{member_id}"),
                phone_index=self.phone_index(phone),
            )
        )

    async def masked_identities(
        self, conn: AsyncConnection, member_ids: list[uuid.UUID]
    ) -> dict[str, MaskedIdentity]:
        if not member_ids:
            return {}
        rows = await conn.execute(
            sa.select(member_identities).where(member_identities.c.member_id.in_(member_ids))
        )
        out: dict[str, MaskedIdentity] = {}
        for row in rows.mappings():
            mid = str(row["member_id"])
            national_id = self._cipher.decrypt(row["national_id_enc"], f"member.national_id:{mid}")
            phone = (
                self._cipher.decrypt(row["phone_enc"], f"member.phone:{mid}") if row["phone_enc"] else None
            )
            out[mid] = MaskedIdentity(mask(national_id), mask(phone) if phone else None)
        return out

    # --- card numbers -------------------------------------------------------------------------

    async def card_number_owner(self, conn: AsyncConnection, card_number: str) -> str | None:
        """The member this card number is registered to, if any."""
        index = self._cipher.blind_index(card_number, "member.card_number")
        owner = await conn.scalar(
            sa.select(card_numbers.c.member_id).where(card_numbers.c.card_number_index == index)
        )
        return None if owner is None else str(owner)

    async def record_card_number(self, conn: AsyncConnection, member_id: str, card_number: str) -> None:
        """A card number belongs to one member for ever (the same member may get it back)."""
        index = self._cipher.blind_index(card_number, "member.card_number")
        stored = await conn.scalar(
            pg_insert(card_numbers)
            .values(
                card_number_index=index,
                member_id=uuid.UUID(member_id),
                card_number_enc=self._cipher.encrypt(card_number, f"member.card_number:{member_id}"),
            )
            .on_conflict_do_nothing()
            .returning(card_numbers.c.member_id)
        )
        if stored is not None:
            return
        owner = await conn.scalar(
            sa.select(card_numbers.c.member_id).where(card_numbers.c.card_number_index == index)
        )
        if str(owner) != member_id:
            raise Conflict(
                "this card_number is already registered to another member",
                field="card_number",
                code="card_number_taken",
            )

    # --- injury details (health data) ---------------------------------------------------------

    async def record_injury_details(
        self, conn: AsyncConnection, report_id: str, member_id: str, details: InjuryDetails
    ) -> None:
        await driver.execute(
            conn,
            _DETAILS_INSERT,
            uuid.UUID(report_id),
            uuid.UUID(member_id),
            self._cipher.encrypt(details.description, f"injury.description:{report_id}"),
            self._cipher.encrypt(details.diagnosis, f"injury.diagnosis:{report_id}"),
            (
                self._cipher.encrypt(details.hospital, f"injury.hospital:{report_id}")
                if details.hospital
                else None
            ),
        )

    async def injury_details(self, conn: AsyncConnection, report_id: uuid.UUID) -> InjuryDetails | None:
        row = (
            (await conn.execute(sa.select(injury_details).where(injury_details.c.report_id == report_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        rid = str(report_id)
        return InjuryDetails(
            description=self._cipher.decrypt(row["description_enc"], f"injury.description:{rid}"),
            diagnosis=self._cipher.decrypt(row["diagnosis_enc"], f"injury.diagnosis:{rid}"),
            hospital=(
                self._cipher.decrypt(row["hospital_enc"], f"injury.hospital:{rid}")
                if row["hospital_enc"]
                else None
            ),
        )


async def release_paper_receipt(conn: AsyncConnection, enrollment_id: uuid.UUID, released_on: date) -> None:
    """Free a receipt whose enrolment was cancelled from its first day (it never covered a day):
    the row stays, for the record, but no longer holds the receipt's key."""
    await conn.execute(
        sa.update(paper_receipts)
        .where(paper_receipts.c.enrollment_id == enrollment_id)
        .values(receipt_key=None, released_on=released_on)
    )


async def record_paper_receipt(
    conn: AsyncConnection,
    *,
    enrollment_id: uuid.UUID,
    member_id: uuid.UUID,
    receipt_reference: str,
    receipt_key: str,
    paid_on: date,
    recorded_on: date,
    recorded_by: str,
) -> bool:
    """Keep a paper enrolment's receipt beside its event, in the same transaction; False if the
    receipt already pays for another enrolment (the unique index decides, so two supervisors
    typing the same receipt at once cannot both use it). Not encrypted (a receipt number
    identifies a payment, not a person) but, like the vault, never published: the event only
    says the enrolment was recorded late and when it was paid."""
    stored = await conn.execute(
        pg_insert(paper_receipts)
        .values(
            enrollment_id=enrollment_id,
            member_id=member_id,
            receipt_reference=receipt_reference,
            receipt_key=receipt_key,
            paid_on=paid_on,
            recorded_on=recorded_on,
            recorded_by=recorded_by,
        )
        .on_conflict_do_nothing(index_elements=[paper_receipts.c.receipt_key])
        .returning(paper_receipts.c.enrollment_id)
    )
    return stored.first() is not None
