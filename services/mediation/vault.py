"""What never goes into an event: the worker's name and phone, the claim in words, texts staff
type with an outcome (terms, reasons) and session minutes. Encrypted at rest; the minutes under
the rotating KeyRing, the rest under the service's FieldCipher (context-bound, so a ciphertext
copied to another column or case does not decrypt)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncConnection

from services.mediation.tables import case_parties, case_texts, minutes
from shared.crypto import FieldCipher, KeyRing


@dataclass(frozen=True)
class Parties:
    worker_name: str | None
    worker_phone: str | None
    employer_name: str
    employer_credit_code: str | None
    claim_text: str


class Vault:
    def __init__(self, cipher: FieldCipher, ring: KeyRing) -> None:
        self._cipher = cipher
        self.ring = ring

    def _enc(self, value: str | None, context: str) -> str | None:
        return None if value is None else self._cipher.encrypt(value, context)

    def _dec(self, value: str | None, context: str) -> str | None:
        return None if value is None else self._cipher.decrypt(value, context)

    async def keep_parties(self, conn: AsyncConnection, case_id: uuid.UUID, p: Parties) -> None:
        c = str(case_id)
        await conn.execute(
            pg_insert(case_parties)
            .values(
                case_id=case_id,
                worker_name=self._enc(p.worker_name, f"worker_name:{c}"),
                worker_phone=self._enc(p.worker_phone, f"worker_phone:{c}"),
                employer_name=p.employer_name,
                employer_credit_code=p.employer_credit_code,
                claim_text=self._cipher.encrypt(p.claim_text, f"claim_text:{c}"),
            )
            .on_conflict_do_nothing()
        )

    async def parties(self, conn: AsyncConnection, case_id: uuid.UUID) -> Parties | None:
        row = (
            (await conn.execute(sa.select(case_parties).where(case_parties.c.case_id == case_id)))
            .mappings()
            .first()
        )
        if row is None:
            return None
        c = str(case_id)
        return Parties(
            worker_name=self._dec(row["worker_name"], f"worker_name:{c}"),
            worker_phone=self._dec(row["worker_phone"], f"worker_phone:{c}"),
            employer_name=row["employer_name"],
            employer_credit_code=row["employer_credit_code"],
            claim_text=self._cipher.decrypt(row["claim_text"], f"claim_text:{c}"),
        )

    async def keep_text(
        self, conn: AsyncConnection, case_id: uuid.UUID, version: int, field: str, text: str
    ) -> None:
        """A text typed with the event of ``version`` of the case (its terms, its reason)."""
        await conn.execute(
            pg_insert(case_texts)
            .values(
                case_id=case_id,
                version=version,
                field=field,
                ciphertext=self._cipher.encrypt(text, f"{field}:{case_id}:{version}"),
            )
            .on_conflict_do_nothing()
        )

    async def texts(self, conn: AsyncConnection, case_id: uuid.UUID) -> dict[int, dict[str, str]]:
        """Version -> field -> text."""
        rows = await conn.execute(sa.select(case_texts).where(case_texts.c.case_id == case_id))
        out: dict[int, dict[str, str]] = {}
        for r in rows.mappings():
            out.setdefault(r["version"], {})[r["field"]] = self._cipher.decrypt(
                r["ciphertext"], f"{r['field']}:{case_id}:{r['version']}"
            )
        return out

    async def keep_minutes(
        self, conn: AsyncConnection, case_id: uuid.UUID, session_id: uuid.UUID, text: str, by: str
    ) -> None:
        await conn.execute(
            sa.insert(minutes).values(
                session_id=session_id,
                case_id=case_id,
                ciphertext=self.ring.encrypt(text, f"minutes:{session_id}"),
                recorded_by=by,
            )
        )

    async def minutes(self, conn: AsyncConnection, session_id: uuid.UUID) -> str | None:
        token = await conn.scalar(sa.select(minutes.c.ciphertext).where(minutes.c.session_id == session_id))
        return None if token is None else self.ring.decrypt(token, f"minutes:{session_id}")

    async def rotate_minutes(self, conn: AsyncConnection) -> int:
        """Re-encrypt every minutes row still under an old key; returns how many."""
        rows = (await conn.execute(sa.select(minutes.c.session_id, minutes.c.ciphertext))).all()
        done = 0
        for session_id, token in rows:
            if self.ring.needs_rotation(token):
                await conn.execute(
                    sa.update(minutes)
                    .where(minutes.c.session_id == session_id)
                    .values(ciphertext=self.ring.rotate(token, f"minutes:{session_id}"))
                )
                done += 1
        return done
