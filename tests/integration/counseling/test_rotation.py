"""Notes key rotation: new notes use the new key, old notes stay readable, the re-encrypt
command moves every note to the current key, after which the old key can go."""

from __future__ import annotations

import base64
import json
import os

import pytest
import sqlalchemy as sa

from services.counseling.__main__ import reencrypt_notes
from tests.integration.counseling.conftest import (
    SUPERVISOR,
    TODAY,
    CounselingUnderTest,
    MovableClock,
    counseling_settings,
    running,
)

pytestmark = pytest.mark.integration

OLD, NEW = base64.b64encode(os.urandom(32)).decode(), base64.b64encode(os.urandom(32)).decode()


async def keys_of(service: CounselingUnderTest) -> dict[str, str]:
    async with service.runtime.engine.connect() as conn:
        rows = (
            await conn.execute(sa.text("SELECT appointment_id::text, key_id, notes FROM session_notes"))
        ).all()
    for _, key_id, notes in rows:
        assert notes.startswith(f"{key_id}:")
    return {appointment_id: key_id for appointment_id, key_id, _ in rows}


async def test_notes_written_under_the_old_key_still_read_after_rotation(
    database_url: str, kafka: str, suffix: str
) -> None:
    clock = MovableClock(TODAY)
    ring_old = {"COUNSELING_NOTES_KEYS": json.dumps({"k1": OLD}), "COUNSELING_NOTES_KEY_ID": "k1"}
    ring_both = {"COUNSELING_NOTES_KEYS": json.dumps({"k1": OLD, "k2": NEW}), "COUNSELING_NOTES_KEY_ID": "k2"}
    ring_new = {"COUNSELING_NOTES_KEYS": json.dumps({"k2": NEW}), "COUNSELING_NOTES_KEY_ID": "k2"}

    settings = counseling_settings(database_url, kafka, suffix, **ring_old)
    async with running(settings, clock) as (runtime, app, http):
        service = CounselingUnderTest(runtime, app, http, settings, clock, settings.membership_topic, kafka)
        old_note = await service.completed("written under the first key")
        assert await keys_of(service) == {old_note: "k1"}

    settings = counseling_settings(database_url, kafka, suffix, **ring_both)
    async with running(settings, clock) as (runtime, app, http):
        service = CounselingUnderTest(runtime, app, http, settings, clock, settings.membership_topic, kafka)
        service.hours = service.hours[1:]  # the first slot hour is taken
        assert (await service.ok("GET", f"/v1/appointments/{old_note}/notes", SUPERVISOR))["notes"] == (
            "written under the first key"
        )
        new_note = await service.completed("written under the second key")
        assert await keys_of(service) == {old_note: "k1", new_note: "k2"}

        rewritten, per_key = await reencrypt_notes(settings)
        assert (rewritten, per_key) == (1, {"k2": 2})
        assert await keys_of(service) == {old_note: "k2", new_note: "k2"}
        assert await reencrypt_notes(settings) == (0, {"k2": 2})  # idempotent

    settings = counseling_settings(database_url, kafka, suffix, **ring_new)  # the old key is gone
    async with running(settings, clock) as (runtime, app, http):
        service = CounselingUnderTest(runtime, app, http, settings, clock, settings.membership_topic, kafka)
        for appointment, text in (
            (old_note, "written under the first key"),
            (new_note, "written under the second key"),
        ):
            assert (await service.ok("GET", f"/v1/appointments/{appointment}/notes", SUPERVISOR))[
                "notes"
            ] == text


async def test_a_ciphertext_moved_to_another_appointment_does_not_decrypt(
    counseling: CounselingUnderTest,
) -> None:
    first = await counseling.completed("first client's notes")
    second = await counseling.completed("second client's notes")
    async with counseling.runtime.engine.begin() as conn:
        await conn.execute(
            sa.text(
                "UPDATE session_notes SET notes = "
                "(SELECT notes FROM session_notes WHERE appointment_id = :a) WHERE appointment_id = :b"
            ),
            {"a": first, "b": second},
        )
    response = await counseling.http.get(f"/v1/appointments/{second}/notes", headers=SUPERVISOR)
    assert response.status_code == 500 and "first client" not in response.text
