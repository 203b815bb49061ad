"""Session notes: who reads them, the audit trail of every attempt, what is stored at rest."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from tests.integration.counseling.conftest import (
    COUNSELOR_1,
    COUNSELOR_2,
    INTEGRATOR,
    STAFF,
    SUPERVISOR,
    CounselingUnderTest,
    database_dump,
)

pytestmark = pytest.mark.integration

NOTES = "Client described panic attacks since the layoff; agreed breathing exercise, review in 2 weeks."


async def test_five_readers_two_allowed_three_refused_and_all_five_audited(
    counseling: CounselingUnderTest,
) -> None:
    appointment = await counseling.completed(NOTES)
    url = f"/v1/appointments/{appointment}/notes"
    answers = {}
    for name, headers in [
        ("staff", STAFF),
        ("integrator", INTEGRATOR),
        ("counselor-2", COUNSELOR_2),
        ("counselor-1", COUNSELOR_1),
        ("supervisor", SUPERVISOR),
    ]:
        answers[name] = await counseling.http.get(url, headers=headers)

    for refused in ("staff", "integrator", "counselor-2"):
        response = answers[refused]
        assert response.status_code == 403, response.text
        assert response.headers["content-type"].startswith("application/problem+json")
        assert NOTES not in response.text and "breathing" not in response.text
    for allowed in ("counselor-1", "supervisor"):
        assert answers[allowed].status_code == 200
        assert answers[allowed].json()["notes"] == NOTES

    trail = await counseling.ok("GET", f"/v1/audit?appointment_id={appointment}", SUPERVISOR)
    items = trail["items"]
    assert [(i["role"], i["allowed"]) for i in items] == [
        ("staff", False),
        ("integrator", False),
        ("counselor", False),
        ("counselor", True),
        ("supervisor", True),
    ]
    assert [i["subject"] for i in items][2:4] == ["counselor-2", "counselor-1"]
    assert all(i["action"] == "read_notes" and i["at"] and i["appointment_id"] == appointment for i in items)
    assert NOTES not in str(trail)


async def test_only_the_supervisor_queries_the_trail(counseling: CounselingUnderTest) -> None:
    for headers in (STAFF, INTEGRATOR, COUNSELOR_1):
        assert (await counseling.http.get("/v1/audit", headers=headers)).status_code == 403
    assert (await counseling.http.get("/v1/audit")).status_code == 401


async def test_only_the_assigned_counsellor_completes_and_writes_notes(
    counseling: CounselingUnderTest,
) -> None:
    counselor = await counseling.counselor()
    appointment = (await counseling.book(await counseling.slot(counselor)))["appointment_id"]
    url = f"/v1/appointments/{appointment}/complete"
    for headers, status in ((COUNSELOR_2, 403), (STAFF, 403), (SUPERVISOR, 403)):
        response = await counseling.http.post(url, headers=headers, json={"notes": NOTES})
        assert response.status_code == status and NOTES not in response.text
    done = await counseling.ok("POST", url, COUNSELOR_1, {"notes": NOTES})
    assert done["status"] == "completed" and NOTES not in str(done)
    again = await counseling.http.post(url, headers=COUNSELOR_1, json={"notes": "overwrite"})
    assert again.status_code == 409 and again.json()["code"] == "appointment_closed"
    read = await counseling.ok("GET", f"/v1/appointments/{appointment}/notes", SUPERVISOR)
    assert read["notes"] == NOTES


async def test_refused_reads_of_missing_things_are_audited_and_reveal_nothing(
    counseling: CounselingUnderTest,
) -> None:
    missing = uuid.uuid4()
    assert (
        await counseling.http.get(f"/v1/appointments/{missing}/notes", headers=COUNSELOR_1)
    ).status_code == 403
    assert (
        await counseling.http.get(f"/v1/appointments/{missing}/notes", headers=SUPERVISOR)
    ).status_code == 404
    counselor = await counseling.counselor()
    booked = (await counseling.book(await counseling.slot(counselor)))["appointment_id"]
    not_yet = await counseling.http.get(f"/v1/appointments/{booked}/notes", headers=COUNSELOR_1)
    assert not_yet.status_code == 404 and not_yet.json()["code"] == "no_notes"
    trail = await counseling.ok("GET", "/v1/audit", SUPERVISOR)
    assert [(i["appointment_id"], i["allowed"]) for i in trail["items"]] == [
        (str(missing), False),
        (str(missing), False),
        (booked, True),
    ]


async def test_the_notes_column_holds_no_plaintext_and_no_table_does(counseling: CounselingUnderTest) -> None:
    appointment = await counseling.completed(NOTES)
    async with counseling.runtime.engine.connect() as conn:
        stored = (
            await conn.execute(
                sa.text("SELECT notes, key_id FROM session_notes WHERE appointment_id = :id"),
                {"id": appointment},
            )
        ).one()
    assert stored.notes.startswith(f"{stored.key_id}:") and NOTES not in stored.notes
    assert "panic" not in stored.notes.lower()
    dump = await database_dump(counseling)
    for fragment in (NOTES, "panic attacks", "breathing exercise"):
        assert fragment not in dump


async def test_the_audit_trail_cannot_be_rewritten(counseling: CounselingUnderTest) -> None:
    appointment = await counseling.completed(NOTES)
    await counseling.http.get(f"/v1/appointments/{appointment}/notes", headers=STAFF)
    for statement in ("UPDATE access_audit SET allowed = true", "DELETE FROM access_audit"):
        with pytest.raises(sa.exc.DBAPIError, match="append-only"):
            async with counseling.runtime.engine.begin() as conn:
                await conn.execute(sa.text(statement))


async def test_invalid_notes_are_refused_without_echo(counseling: CounselingUnderTest) -> None:
    counselor = await counseling.counselor()
    appointment = (await counseling.book(await counseling.slot(counselor)))["appointment_id"]
    url = f"/v1/appointments/{appointment}/complete"
    secret = "suicidal thoughts last week"
    for body in (
        {"notes": secret + "\x00"},
        {"notes": secret * 2000},
        {"notes": secret, "extra": secret},
        {"notes": [secret]},
        {"notes": ""},
    ):
        response = await counseling.http.post(url, headers=COUNSELOR_1, json=body)
        assert response.status_code in (413, 422), response.text
        assert secret not in response.text and "suicidal" not in response.text
