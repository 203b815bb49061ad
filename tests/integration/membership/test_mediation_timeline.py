"""mediation.events on the member's timeline (group membership.mediation), on the real broker:
the member's case with where it went, nothing twice on redelivery, a non-member's case skipped,
and none of the case's money, mediator or text copied into membership."""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg
import httpx
import pytest
import sqlalchemy as sa
from aiokafka import AIOKafkaProducer

from services.mediation.app import create_app as create_mediation_app
from services.mediation.settings import MediationSettings
from services.membership.tables import mediation_cases, mediation_events
from shared.contracts import mediation as md
from shared.envelope import EventEnvelope
from shared.events import DomainEvent
from shared.eventstore import EventStore
from shared.tables import inbox
from tests.infra import Infra
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import INTEGRATOR, STAFF, new_member, union_tree
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration

AT = datetime(2026, 9, 16, 2, 0, tzinfo=UTC)
#: What must never reach membership from a mediation case (amounts, mediator, text).
SECRETS = ("8600", "7000", "mediator-7", "顺义区劳动人事争议仲裁委员会")


class MediationFeed:
    """Envelopes as the mediation relay publishes them: consecutive versions per stream."""

    def __init__(self) -> None:
        self.store = EventStore("mediation", md.registry)
        self.versions: dict[str, int] = defaultdict(int)

    def __call__(self, stream_type: str, stream_id: uuid.UUID, event: DomainEvent) -> EventEnvelope:
        sid = str(stream_id)
        [env] = self.store.envelopes(
            stream_type, sid, self.versions[sid], [event], correlation_id=uuid.uuid4()
        )
        self.versions[sid] += 1
        return env.model_copy(update={"occurred_at": AT.replace(minute=self.versions[sid])})


def _received(case: uuid.UUID, station: uuid.UUID, member: uuid.UUID | None, number: str) -> md.CaseReceived:
    return md.CaseReceived(
        case_id=case,
        case_number=number,
        station_union_id=station,
        party=md.Party.MEMBER if member else md.Party.WORKER,
        member_id=member,
        category=md.Category.WAGES,
        amount_claimed=Decimal("8600.00"),
        learned_on=date(2026, 8, 31),
        received_on=date(2026, 9, 16),
        mediation_deadline=date(2026, 10, 8),
        arbitration_limit=date(2027, 8, 31),
    )


async def _send(service: Service, envelopes: list[EventEnvelope]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=service.kafka, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for env in envelopes:
            await producer.send_and_wait(
                service.settings.mediation_topic,
                env.to_bytes(),
                key=env.kafka_key(),
                headers=env.kafka_headers(),
            )
    finally:
        await producer.stop()


async def test_a_members_case_reaches_the_timeline_once_without_money_mediator_or_text(
    service: Service,
) -> None:
    tree = await union_tree(service, "-mediation")
    mid = uuid.UUID((await new_member(service, tree["grassroots"]))["member_id"])
    street, district = uuid.UUID(tree["street"]), uuid.UUID(tree["district"])
    case, other, session = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    room = uuid.uuid4()
    feed = MediationFeed()
    starts = datetime(2026, 9, 18, 2, 0, tzinfo=UTC)
    member_case = [
        feed("Case", case, _received(case, street, mid, "SY-2026-0042")),
        feed(
            "Case",
            case,
            md.MediationSessionScheduled(
                case_id=case,
                session_id=session,
                room_id=room,
                starts_at=starts,
                ends_at=starts.replace(hour=4),
                mediator="mediator-7",
                parties_present=["worker", "employer"],
            ),
        ),
        feed("Case", case, md.MinutesRecorded(case_id=case, session_id=session, recorded_by="mediator-7")),
        feed("Case", case, md.EmployerRefused(case_id=case, refused_on=date(2026, 9, 18))),
        feed(
            "Case",
            case,
            md.CaseEscalated(
                case_id=case,
                from_tier=md.Tier.STREET,
                from_union_id=street,
                to_tier=md.Tier.DISTRICT,
                to_union_id=district,
                escalated_on=date(2026, 9, 21),
                mediation_deadline=date(2026, 10, 9),
            ),
        ),
        feed(
            "Case",
            case,
            md.AgreementReached(
                case_id=case,
                amount=Decimal("7000.00"),
                due_on=date(2026, 10, 31),
                agreed_on=date(2026, 10, 12),
                tier=md.Tier.DISTRICT,
                handling_union_id=district,
            ),
        ),
        feed(
            "Case",
            case,
            md.AgreementFulfilled(
                case_id=case, amount_paid=Decimal("7000.00"), fulfilled_on=date(2026, 10, 30)
            ),
        ),
    ]
    room_stream = [
        feed(
            "Room",
            room,
            md.RoomBooked(
                room_id=room,
                station_union_id=street,
                session_id=session,
                case_id=case,
                starts_at=starts,
                ends_at=starts.replace(hour=4),
            ),
        ),
    ]
    worker_case = [
        feed("Case", other, _received(other, street, None, "SY-2026-0043")),
        feed(
            "Case",
            other,
            md.CaseReferredToArbitration(
                case_id=other,
                body="顺义区劳动人事争议仲裁委员会",
                referred_on=date(2026, 9, 25),
                tier=md.Tier.STREET,
                handling_union_id=street,
            ),
        ),
    ]
    # Each escalation and agreement redelivered (same event ids), as after a relay crash.
    await _send(service, [*worker_case, *room_stream, *member_case, member_case[4], member_case[5]])

    async def mediation_entries() -> list[dict[str, Any]] | None:
        r = await service.client.get(f"/v1/members/{mid}/timeline", headers=STAFF)
        entries = [t for t in r.json()["items"] if t["source"] == "mediation"]
        return entries if "AgreementFulfilled" in [e["event_type"] for e in entries] else None

    entries = await eventually(mediation_entries, timeout=60)
    assert [(e["event_type"], e["data"]["status"], e["data"]["tier"]) for e in entries] == [
        ("CaseReceived", "open", "street"),
        ("MediationSessionScheduled", "open", "street"),
        ("EmployerRefused", "open", "street"),
        ("CaseEscalated", "escalated", "district"),
        ("AgreementReached", "agreed", "district"),
        ("AgreementFulfilled", "agreed", "district"),
    ]
    assert all(e["data"]["case_number"] == "SY-2026-0042" for e in entries)
    assert (
        entries[0]["data"]["category"] == "wages" and entries[0]["data"]["mediation_deadline"] == "2026-10-08"
    )
    assert entries[3]["data"]["to_tier"] == "district" and entries[4]["data"]["agreed_on"] == "2026-10-12"

    answer = (await service.client.get(f"/v1/members/{mid}/timeline", headers=INTEGRATOR)).json()
    [summary] = answer["mediation_cases"]
    assert summary["case_id"] == str(case) and summary["case_number"] == "SY-2026-0042"
    assert (summary["status"], summary["tier"], summary["closed_on"]) == ("agreed", "district", "2026-10-12")
    assert summary["mediation_deadline"] == "2026-10-09"  # the district's period, from the escalation
    text = json.dumps(answer, ensure_ascii=False)
    for secret in SECRETS:
        assert secret not in text, secret

    # The worker who is not a member: processed by the consumer (the inbox says so), kept nowhere.
    consumer = "mediation"
    async with service.runtime.engine.connect() as conn:

        async def worker_case_consumed() -> bool:
            ids = [env.event_id for env in worker_case]
            seen = await conn.scalar(
                sa.select(sa.func.count()).select_from(inbox).where(inbox.c.event_id.in_(ids))
            )
            await conn.commit()
            return seen == len(ids)

        await eventually(worker_case_consumed, timeout=30)
        consumers = set((await conn.execute(sa.select(inbox.c.consumer).distinct())).scalars())
        assert consumer in consumers, consumers
        assert await conn.scalar(sa.select(sa.func.count()).where(mediation_cases.c.case_id == other)) == 0
        assert await conn.scalar(sa.select(sa.func.count()).where(mediation_events.c.case_id == other)) == 0
        # Exactly one row per applied event of the member's case, though two were delivered twice.
        assert await conn.scalar(sa.select(sa.func.count()).where(mediation_events.c.case_id == case)) == 6
        stored = json.dumps(
            [dict(r) for r in (await conn.execute(sa.select(mediation_events.c.data))).mappings()],
            ensure_ascii=False,
        )
        for secret in SECRETS:
            assert secret not in stored, secret


@pytest.fixture
async def mediation_app(service: Service, infra: Infra) -> AsyncIterator[httpx.AsyncClient]:
    """The real mediation service, in-process on its own database, reading this module's
    membership topic and publishing to the topic membership's mediation consumer reads."""
    name = f"t_mediation_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(infra.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = infra.admin_url.rpartition("/")[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    settings = MediationSettings(
        MEDIATION_DATABASE_URL=f"{base}/{name}",
        KAFKA_BOOTSTRAP_SERVERS=infra.kafka,
        MEDIATION_TOPIC=service.settings.mediation_topic,
        MEDIATION_MEMBERSHIP_TOPIC=service.topic,
        consumer_group_prefix=f"test.{uuid.uuid4().hex[:12]}.",
        relay_poll_interval=0.2,
    )
    app = create_mediation_app(settings, clock=lambda: date(2026, 9, 16))
    transport = httpx.ASGITransport(app)
    try:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(transport=transport, base_url="http://mediation") as http,
        ):
            yield http
    finally:
        admin = await asyncpg.connect(infra.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_the_real_mediation_service_feeds_the_timeline_including_a_cancelled_session(
    service: Service, mediation_app: httpx.AsyncClient
) -> None:
    tree = await union_tree(service, "-real-mediation")
    mid = (await new_member(service, tree["grassroots"]))["member_id"]
    body = {
        "union_id": tree["street"],
        "member_id": mid,
        "employer": {"name": "顺义某物流有限公司"},
        "category": "overtime",
        "claim_text": "加班费未付",
        "amount": "8600.00",
        "learned_on": "2026-08-31",
    }

    async def received() -> dict[str, Any] | None:
        # 409 union_not_known / member_not_known until membership's events reached mediation.
        r = await mediation_app.post("/v1/cases", json=body, headers=STAFF)
        assert r.status_code in (201, 409), r.text
        answer: dict[str, Any] = r.json()
        return answer if r.status_code == 201 else None

    case = await eventually(received, timeout=60)
    cid = case["case_id"]
    slot = {
        "starts_at": "2026-09-18T10:00:00+08:00",
        "ends_at": "2026-09-18T12:00:00+08:00",
        "mediator": "mediator-7",
    }
    booked = await mediation_app.post(f"/v1/cases/{cid}/sessions", json=slot, headers=STAFF)
    assert booked.status_code == 201, booked.text
    session = booked.json()["session_id"]
    steps: list[tuple[str, dict[str, Any] | None]] = [
        (f"/v1/cases/{cid}/sessions/{session}/cancel", {"reason": "雇主代理人出差"}),
        (f"/v1/cases/{cid}/escalate", {"reason": "街道调解不成"}),
        (f"/v1/cases/{cid}/agreement", {"terms": "分两期支付", "amount": "7000.00", "due_on": "2026-10-31"}),
    ]
    for path, payload in steps:
        r = await mediation_app.post(path, json=payload, headers=STAFF)
        assert r.status_code == 200, (path, r.text)

    async def mediation_entries() -> list[dict[str, Any]] | None:
        r = await service.client.get(f"/v1/members/{mid}/timeline", headers=STAFF)
        entries = [t for t in r.json()["items"] if t["source"] == "mediation"]
        return entries if "AgreementReached" in [e["event_type"] for e in entries] else None

    entries = await eventually(mediation_entries, timeout=60)
    assert [(e["event_type"], e["data"]["status"], e["data"]["tier"]) for e in entries] == [
        ("CaseReceived", "open", "street"),
        ("MediationSessionScheduled", "open", "street"),
        ("SessionCancelled", "open", "street"),
        ("CaseEscalated", "escalated", "district"),
        ("AgreementReached", "agreed", "district"),
    ]
    assert entries[2]["data"]["session_id"] == session
    answer = (await service.client.get(f"/v1/members/{mid}/timeline", headers=STAFF)).json()
    [summary] = answer["mediation_cases"]
    assert (summary["case_number"], summary["category"], summary["status"]) == (
        case["case_number"],
        "overtime",
        "agreed",
    )
    text = json.dumps(answer, ensure_ascii=False)
    for secret in (*SECRETS, "加班费", "雇主代理人出差", "街道调解不成", "分两期支付", "顺义某物流"):
        assert secret not in text, secret
