"""Nothing confidential leaves the service: no topic, no log line, no error body holds the notes,
a client's name or phone, and a member appears on Kafka only as a ``client_ref``."""

from __future__ import annotations

import json
import logging

import pytest

from shared.contracts import counseling as c
from shared.envelope import EventEnvelope
from shared.kafka import dlq_topic
from tests.integration.counseling.conftest import (
    COUNSELOR_1,
    COUNSELOR_2,
    STAFF,
    SUPERVISOR,
    CounselingUnderTest,
    database_dump,
)
from tests.kafka_support import read_topic

pytestmark = pytest.mark.integration

NOTES = "Wife left in March; drinking more since; screened negative for self-harm; refer to group."
NAME, PHONE = "Qin Xiaoyu", "13712349876"
REASON = "Qin is in hospital"


async def test_no_topic_log_line_or_answer_holds_notes_names_or_phones(
    counseling: CounselingUnderTest, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    member = await counseling.member()
    counselor = await counseling.counselor()
    resident = {"resident": {"full_name": NAME, "phone": PHONE}}

    session = await counseling.book(await counseling.slot(counselor), **resident)
    member_session = await counseling.book(await counseling.slot(counselor), member_id=str(member))
    cancelled = await counseling.book(await counseling.slot(counselor), **resident)
    answers = [session, member_session, cancelled]
    answers.append(
        await counseling.ok(
            "POST", f"/v1/appointments/{cancelled['appointment_id']}/cancel", STAFF, {"reason": REASON}
        )
    )
    url = f"/v1/appointments/{session['appointment_id']}/complete"
    refused = await counseling.http.post(url, headers=COUNSELOR_2, json={"notes": NOTES})
    answers.append(refused.json())
    answers.append(await counseling.ok("POST", url, COUNSELOR_1, {"notes": NOTES}))
    await counseling.ok(
        "POST", f"/v1/appointments/{member_session['appointment_id']}/complete", COUNSELOR_1, {"notes": NOTES}
    )
    for headers in (STAFF, COUNSELOR_2, SUPERVISOR):
        response = await counseling.http.get(
            f"/v1/appointments/{session['appointment_id']}/notes", headers=headers
        )
        if headers is not SUPERVISOR:
            answers.append(response.json())
    answers.append(await counseling.ok("GET", "/v1/audit", SUPERVISOR))
    answers.append(await counseling.ok("GET", "/v1/statistics", STAFF))
    answers.append(await counseling.ok("GET", "/v1/no-shows?min_count=0", STAFF))
    answers.append(await counseling.ok("GET", "/v1/appointments", STAFF))

    # 1 onboarding, 3 slots, 3 bookings, 1 cancellation, 2 completions
    published = await read_topic(counseling.kafka, counseling.topic, expect=10)
    assert len(published) == 10
    types = [EventEnvelope.from_bytes(r.value).event_type for r in published]
    assert sorted(set(types)) == sorted(
        {
            "CounselorOnboarded",
            "SlotPublished",
            "AppointmentBooked",
            "AppointmentCancelled",
            "AppointmentCompleted",
        }
    )
    raw = [r.value for r in published]
    for topic in (
        dlq_topic(counseling.topic),
        counseling.membership_topic,
        dlq_topic(counseling.membership_topic),
    ):
        raw.extend(r.value for r in await read_topic(counseling.kafka, topic, expect=1, timeout=3))
    headers = [json.dumps({k: v.decode() for k, v in r.headers.items()}).encode() for r in published]
    on_kafka = b"\n".join(raw + headers + [r.key or b"" for r in published])

    # the member's own MemberJoined is upstream's business; on counseling.events the member is a ref
    counseling_bytes = b"\n".join(r.value for r in published)
    assert str(member).encode() not in counseling_bytes
    for envelope in map(EventEnvelope.from_bytes, (r.value for r in published)):
        if envelope.event_type == c.AppointmentBooked.event_type:
            assert set(envelope.data) == set(c.AppointmentBooked.model_fields)

    secrets_ = [NOTES, "self-harm", "drinking", NAME, "Qin", PHONE, "1371234", REASON, "hospital"]
    logs = (
        "\n".join(f"{r.getMessage()} {r.args!r} {getattr(r, '__dict__', {})!r}" for r in caplog.records)
        + caplog.text
    )
    assert len(caplog.records) > 0
    everything_answered = json.dumps(answers)
    for secret in secrets_:
        assert secret.encode() not in on_kafka, secret
        assert secret not in logs, secret
        assert secret not in everything_answered, secret
    # at rest: only ciphertexts (the database holds no plaintext of any of them)
    dump = await database_dump(counseling)
    for secret in secrets_:
        assert secret not in dump, secret
