"""examples/subscriber as an integrator would run it: a separate process on the real broker,
following claims.events while the seed story happens, stopped and restarted in the middle, fed
a duplicate and an event type it does not know."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer

from shared.kafka import ensure_topics
from tests.conftest import EMITTED
from tests.e2e.processes import ServiceProcess
from tests.infra import Infra
from tests.kafka_broker import REPO
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.e2e

SUBSCRIBER = REPO / "examples" / "subscriber" / "subscriber.py"
STAFF = {"Authorization": "Bearer local-staff-token"}
SUPERVISOR = {"Authorization": "Bearer local-supervisor-token"}


@pytest.fixture
async def system(
    infra: Infra, service_databases: dict[str, str], tmp_path: Path
) -> AsyncIterator[tuple[ServiceProcess, ServiceProcess, dict[str, str]]]:
    """Membership and claims as processes on fresh databases and topics (and their own groups)."""
    suffix = uuid.uuid4().hex[:10]
    topics = {"membership": f"e2e.{suffix}.membership.events", "claims": f"e2e.{suffix}.claims.events"}
    await ensure_topics(infra.kafka, topics.values())
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": infra.kafka,
        "UNION_RELAY_POLL_INTERVAL": "0.2",
        "MEMBERSHIP_TOPIC": topics["membership"],
        "CLAIMS_TOPIC": topics["claims"],
        "CLAIMS_MEMBERSHIP_TOPIC": topics["membership"],
        "MEMBERSHIP_CLAIMS_TOPIC": topics["claims"],
        "MEMBERSHIP_ACTIVITIES_TOPIC": topics["claims"].replace(".claims.", ".activities."),
        "MEMBERSHIP_MEDIATION_TOPIC": topics["claims"].replace(".claims.", ".mediation."),
        "UNION_CONSUMER_GROUP_PREFIX": f"e2e.{suffix}.",
    }
    membership = ServiceProcess(
        "membership", {**common, "MEMBERSHIP_DATABASE_URL": service_databases["membership"]}, tmp_path
    )
    claims = ServiceProcess(
        "claims", {**common, "CLAIMS_DATABASE_URL": service_databases["claims"]}, tmp_path
    )
    membership.start()
    claims.start()
    try:
        yield membership, claims, topics
    finally:
        claims.stop()
        membership.stop()


def test_the_subscriber_uses_nothing_of_our_code() -> None:
    imported: set[str] = set()
    for node in ast.walk(ast.parse(SUBSCRIBER.read_text())):
        if isinstance(node, ast.Import):
            imported |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module.split(".")[0])
    assert imported - set(sys.stdlib_module_names) == {"aiokafka", "jsonschema"}


class Subscriber:
    def __init__(self, kafka: str, topic: str, tmp: Path) -> None:
        self.args = [
            sys.executable,
            str(SUBSCRIBER),
            "--bootstrap",
            kafka,
            "--topic",
            topic,
            "--group",
            f"e2e.subscriber.{uuid.uuid4().hex[:8]}",
            "--state",
            str(tmp / "subscriber.sqlite3"),
        ]
        self.out, self.err = tmp / "subscriber.out", tmp / "subscriber.err"
        self.proc: subprocess.Popen[bytes] | None = None

    def notes(self) -> str:
        return self.err.read_text() if self.err.exists() else ""

    def start(self) -> None:
        started = self.notes().count("following")
        self.proc = subprocess.Popen(
            self.args, cwd=SUBSCRIBER.parent, stdout=self.out.open("ab"), stderr=self.err.open("ab")
        )
        deadline = time.monotonic() + 30
        while self.notes().count("following") == started:
            assert self.proc.poll() is None, self.notes()
            assert time.monotonic() < deadline, "subscriber did not start"
            time.sleep(0.1)

    def stop(self) -> int:
        """SIGTERM: it finishes the batch in hand and leaves the group."""
        assert self.proc is not None
        self.proc.terminate()
        return self.proc.wait(timeout=30)

    def filed(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.out.read_text().splitlines() if line.strip()]


async def test_subscriber_prints_each_filed_claim_once_across_a_restart(
    system: tuple[ServiceProcess, ServiceProcess, dict[str, str]],
    infra: Infra,
    tmp_path: Path,
) -> None:
    membership, claims, topics = system
    sub = Subscriber(infra.kafka, topics["claims"], tmp_path)
    sub.start()
    today = date.today()
    async with (
        httpx.AsyncClient(base_url=membership.url, headers=STAFF, timeout=10) as m,
        httpx.AsyncClient(base_url=claims.url, headers=STAFF, timeout=10) as c,
    ):

        async def created(
            path: str, body: dict[str, Any], status: int = 201, headers: dict[str, str] | None = None
        ) -> dict[str, Any]:
            r = await m.post(path, json=body, headers=headers)
            assert r.status_code == status, r.text
            answer: dict[str, Any] = r.json()
            return answer

        parent = None
        for name, level in [
            ("北京市总工会", "municipal"),
            ("顺义区总工会", "district"),
            ("石园街道总工会", "street"),
            ("五里仓第二社区联合工会", "grassroots"),
        ]:
            parent = (await created("/v1/unions", {"name": name, "level": level, "parent_id": parent}))[
                "union_id"
            ]
        member_id = (
            await created(
                "/v1/members",
                {
                    "union_id": parent,
                    "full_name": "王师傅",
                    "gender": "male",
                    "birth_date": "1980-03-04",
                    "national_id": "110113198003041238",
                    "joined_on": (today - timedelta(days=800)).isoformat(),
                },
            )
        )["member_id"]
        await created(
            f"/v1/members/{member_id}/card",
            {"card_number": "6210300012375678", "issued_on": (today - timedelta(days=400)).isoformat()},
        )
        await created(
            f"/v1/members/{member_id}/enrollments",
            {
                "plan_code": "accident_injury",
                "shares": 1,
                "starts_on": (today - timedelta(days=60)).isoformat(),
                # Cover from before today is a paper enrolment, recorded by a supervisor.
                "paper": {
                    "receipt_reference": f"E2E-{uuid.uuid4().hex[:12]}",
                    "paid_on": (today - timedelta(days=60)).isoformat(),
                },
            },
            headers=SUPERVISOR,
        )

        async def report(days_ago: int) -> str:
            body = {
                "occurred_on": (today - timedelta(days=days_ago)).isoformat(),
                "work_related": False,
                "description": "hurt his hand",
                "diagnosis": "contusion",
            }
            rid: str = (await created(f"/v1/members/{member_id}/injury-reports", body, status=202))[
                "report_id"
            ]
            return rid

        async def claims_of(rid: str) -> list[dict[str, Any]] | None:
            items: list[dict[str, Any]] = (await c.get("/v1/claims", params={"report_id": rid})).json()[
                "items"
            ]
            return items if len(items) == 2 else None

        first = await report(3)
        opened = await eventually(lambda: claims_of(first), timeout=60)
        await eventually(lambda: _printed(sub, 2), timeout=30)

        assert sub.stop() == 0  # restart in the middle of the story
        second = await report(1)
        opened += await eventually(lambda: claims_of(second), timeout=60)
        sub.start()
        await eventually(lambda: _printed(sub, 4), timeout=30)

    # A redelivery (as after a relay crash) and a type added later: not printed, nothing breaks.
    [original] = [
        r
        for r in await read_topic(infra.kafka, topics["claims"], expect=4, timeout=10)
        if r.headers["event_type"] == b"ClaimFiled"
    ][:1]
    newer = json.loads(original.value) | {"event_id": str(uuid.uuid4()), "event_type": "ClaimAppealed"}
    producer = AIOKafkaProducer(bootstrap_servers=infra.kafka)
    await producer.start()
    try:
        await producer.send_and_wait(topics["claims"], original.value, key=original.key)
        await producer.send_and_wait(topics["claims"], json.dumps(newer).encode(), key=original.key)
    finally:
        await producer.stop()
    await eventually(lambda: _noted(sub, "skipped"), timeout=30)
    assert sub.stop() == 0

    filed = sub.filed()
    assert sorted(f["claim_filed"] for f in filed) == sorted(x["claim_id"] for x in opened)
    assert {f["plan_code"] for f in filed} == {"accident_injury", "card_non_work_accident"}
    notes = sub.notes()
    assert "duplicate" in notes and "no schema for ClaimAppealed v1" in notes
    assert "invalid" not in notes, notes  # every real message matched its published schema

    # What the service processes published goes through the session's contract check as well.
    for topic in topics.values():
        for record in await read_topic(infra.kafka, topic, expect=1, timeout=5):
            if record.value != json.dumps(newer).encode():  # not the one this test made up
                EMITTED.record_json(json.loads(record.value))


async def _printed(sub: Subscriber, n: int) -> bool:
    return sub.out.exists() and len(sub.filed()) >= n


async def _noted(sub: Subscriber, word: str) -> bool:
    return word in sub.notes()
