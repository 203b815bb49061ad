"""A service's log, as a real process writes it: every line one JSON object, no colour, no PII."""

from __future__ import annotations

import json
import uuid
from datetime import date, timedelta
from pathlib import Path

import httpx
import pytest

from tests.e2e.processes import ServiceProcess
from tests.infra import Infra

pytestmark = pytest.mark.e2e

STAFF = {"Authorization": "Bearer local-staff-token"}
NATIONAL_ID = "110113198003041238"
PHONE = "13912345678"
FIELDS = {"time", "level", "service", "logger", "message", "correlation_id", "event_id"}


def test_every_log_line_is_json_without_colour_or_personal_data(
    infra: Infra, service_databases: dict[str, str], tmp_path: Path
) -> None:
    suffix = uuid.uuid4().hex[:10]
    service = ServiceProcess(
        "membership",
        {
            "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
            "MEMBERSHIP_DATABASE_URL": service_databases["membership"],
            "MEMBERSHIP_TOPIC": f"logs.{suffix}.membership.events",
            "MEMBERSHIP_CLAIMS_TOPIC": f"logs.{suffix}.claims.events",
            "MEMBERSHIP_ACTIVITIES_TOPIC": f"logs.{suffix}.activities.events",
            "MEMBERSHIP_MEDIATION_TOPIC": f"logs.{suffix}.mediation.events",
            "UNION_LOG_LEVEL": "DEBUG",  # the most lines, from every library
        },
        tmp_path,
    )
    service.start()
    try:
        with httpx.Client(base_url=service.url, headers=STAFF, timeout=10) as http:
            parent = None
            for name, level in [
                ("市总工会", "municipal"),
                ("区总工会", "district"),
                ("街道总工会", "street"),
            ]:
                r = http.post("/v1/unions", json={"name": name, "level": level, "parent_id": parent})
                assert r.status_code == 201, r.text
                parent = r.json()["union_id"]
            r = http.post("/v1/unions", json={"name": "社区工会", "level": "grassroots", "parent_id": parent})
            union_id = r.json()["union_id"]
            member = {
                "union_id": union_id,
                "full_name": "王师傅",
                "gender": "male",
                "birth_date": "1980-03-04",
                "national_id": NATIONAL_ID,
                "phone": PHONE,
                "joined_on": (date.today() - timedelta(days=10)).isoformat(),
            }
            assert http.post("/v1/members", json=member).status_code == 201
            # Refused ones too: a duplicate, and a malformed body that echoes the identifier.
            assert http.post("/v1/members", json=member).status_code >= 400
            bad = http.post("/v1/members", json=member | {"birth_date": NATIONAL_ID, "phone": PHONE + "0"})
            assert bad.status_code == 422
            assert http.get("/v1/members", params={"national_id": NATIONAL_ID}).status_code < 500
    finally:
        service.stop()

    text = service.log.read_text(encoding="utf-8")
    assert "\x1b[" not in text, "colour codes in the log file"
    assert NATIONAL_ID not in text and PHONE not in text
    lines = [json.loads(line) for line in text.splitlines()]  # raises on any non-JSON line
    assert len(lines) > 20
    for line in lines:
        assert set(line) >= FIELDS, line
        assert line["service"] == "membership"
    loggers = {line["logger"] for line in lines}
    assert {"uvicorn.error", "alembic.runtime.migration"} <= loggers, loggers
    assert any(str(line["logger"]).startswith("aiokafka") for line in lines)
