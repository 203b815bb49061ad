"""Concurrent injury reports share transactions (shared/group_commit.py); through HTTP, on the
real PostgreSQL: every answer is each request's own, and a refusal takes no other report with it."""
# A report whose group fails after a write is covered by tests/integration/core/test_group_commit.py.

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from services.membership.tables import injury_details
from shared.tables import events as events_table
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import STAFF, assert_problem, new_member, post

pytestmark = pytest.mark.integration

BODY = {"occurred_on": "2016-08-01", "work_related": False, "description": "d", "diagnosis": "x"}


async def report_events(service: Service, report_ids: list[str]) -> list[Any]:
    async with service.runtime.engine.connect() as conn:
        rows = await conn.execute(
            sa.select(events_table.c.stream_id, events_table.c.correlation_id).where(
                events_table.c.event_type == "InjuryReported", events_table.c.stream_id.in_(report_ids)
            )
        )
        return list(rows)


async def test_concurrent_reports_each_get_their_own_answer_and_a_refusal_takes_none_with_it(
    service: Service, tree: dict[str, str]
) -> None:
    members = [(await new_member(service, tree["grassroots"], card=True))["member_id"] for _ in range(6)]
    groups = service.runtime.groups
    grouped_before, failed_before = groups.grouped_commands, groups.groups_failed
    sent: list[tuple[str, str, dict[str, Any]]] = []  # (kind, member, body)
    for i in range(36):
        if i % 12 == 5:
            sent.append(("unknown", str(uuid.uuid4()), BODY))  # 404 member
        elif i % 12 == 9:
            sent.append(("refused", members[i % 6], {**BODY, "occurred_on": "2001-01-01"}))  # before joining
        else:
            sent.append(("ok", members[i % 6], {**BODY, "occurred_on": f"2016-07-{1 + i % 28:02d}"}))
    cids = [str(uuid.uuid4()) for _ in sent]

    answers = await asyncio.gather(
        *(
            post(
                service,
                f"/v1/members/{member}/injury-reports",
                body,
                {**STAFF, "X-Correlation-ID": cid},
            )
            for (_, member, body), cid in zip(sent, cids, strict=True)
        )
    )

    accepted: dict[str, str] = {}  # report id -> correlation id of its request
    for (kind, member, _), cid, answer in zip(sent, cids, answers, strict=True):
        if kind == "unknown":
            assert_problem(answer, 404)
        elif kind == "refused":
            assert_problem(answer, 422, "occurred_on")
        else:
            assert answer.status_code == 202, answer.text
            assert answer.json()["member_id"] == member
            accepted[answer.json()["report_id"]] = cid
    assert len(accepted) == 30  # 30 distinct reports, none answered twice
    stored = await report_events(service, list(accepted))
    assert sorted((r.stream_id, str(r.correlation_id)) for r in stored) == sorted(accepted.items())
    async with service.runtime.engine.connect() as conn:
        details = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(injury_details)
            .where(injury_details.c.member_id.in_([uuid.UUID(m) for m in members]))
        )
    assert details == 30  # refused reports left no health details behind
    # They did share transactions, and the refusals, made before the handler writes anything,
    # took no group down: nothing had to run again alone.
    assert groups.grouped_commands > grouped_before
    assert groups.groups_failed == failed_before


async def test_one_idempotency_key_sent_concurrently_files_one_report(
    service: Service, tree: dict[str, str]
) -> None:
    member = (await new_member(service, tree["grassroots"], card=True))["member_id"]
    headers = {**STAFF, "Idempotency-Key": f"k-{uuid.uuid4()}"}

    answers = await asyncio.gather(
        *(post(service, f"/v1/members/{member}/injury-reports", BODY, headers) for _ in range(8))
    )

    assert {a.status_code for a in answers} == {202}, [a.text for a in answers]
    report_ids = {a.json()["report_id"] for a in answers}
    assert len(report_ids) == 1
    assert len(await report_events(service, list(report_ids))) == 1
    assert sum(a.headers.get("Idempotent-Replayed") == "true" for a in answers) == 7
