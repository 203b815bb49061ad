"""Adversarial review of the claims reaction (see tests/integration/core/test_consumer_adversarial.py).

Tests marked ``DEFECT`` fail on the code they were written against."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa
from aiokafka.partitioner import murmur2

from shared.contracts import membership as m
from tests.integration.claims.conftest import ClaimsUnderTest
from tests.integration.claims.test_injury_reaction import AUG_2, YEAR, decision, settled
from tests.integration.claims.test_waiting_for_facts import plan_defined
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration

PARTITIONS = 3  # ensure_topics' default, which the ``claims`` fixture uses


def partition_of(key: str) -> int:
    return (murmur2(key.encode()) & 0x7FFFFFFF) % PARTITIONS


async def plan_version(c: ClaimsUnderTest, code: str) -> int | None:
    async with c.runtime.engine.connect() as conn:
        return await conn.scalar(sa.text("SELECT version FROM plans WHERE code = :c"), {"c": code})


async def test_a_report_waits_for_the_plan_edit_it_was_made_after_not_just_for_as_many_edits(
    claims: ClaimsUnderTest,
) -> None:
    """DEFECT. ``catalogue_version`` is a *count* of plan edits (sum of plan stream versions), and a
    report is decided once claims has applied at least that many edits, whichever they are.

    Membership's order: PlanDefined(accident_plus) v1 (catalogue 1), the report (made at
    catalogue 1, the member is enrolled in accident_plus), PlanDefined(other) v1 (catalogue 2).
    The three have different keys on three different partitions, so claims may see them in any
    order: here other's edit first, then the report, then accident_plus (its partition lagging).
    Claims then holds one edit (other's), 1 >= 1, and decides the report against a catalogue
    without accident_plus: "no coverage", final (one decision per report). Expected: the report
    waits for the accident_plus edit and opens its paid claim — the "plan defined after the
    report" defect again, through reordering across partitions."""
    f, member = claims.feed, uuid.uuid4()
    await f.send(f.joined(member), f.card(member), f.enrolled(member, *YEAR, plan="accident_plus"))

    plus = "accident_plus"
    other = next(c for c in (f"zz_plan_{i}" for i in range(100)) if partition_of(c) != partition_of(plus))
    report_id = next(
        r
        for r in (uuid.uuid4() for _ in range(100))
        if partition_of(str(r)) not in {partition_of(plus), partition_of(other)}
    )
    plus_v1 = f.envelope("Plan", plus, plan_defined(plus))  # type: ignore[arg-type]  # catalogue 1
    report = f.envelope(
        "InjuryReport",
        report_id,
        m.InjuryReported(
            report_id=report_id,
            member_id=member,
            occurred_on=AUG_2,
            work_related=True,
            reported_on=AUG_2,
            member_version=f.versions[str(member)],
            plan_versions={"accident_plus": 1},  # made after accident_plus was defined
        ),
    )
    other_v1 = f.envelope("Plan", other, plan_defined(other))  # type: ignore[arg-type]  # catalogue 2

    await f.send(other_v1)
    await eventually(lambda: plan_version(claims, other), timeout=30)
    await f.send(report)

    async def seen() -> bool:  # the report reached claims and was either parked or decided
        async with claims.runtime.engine.connect() as conn:
            n = await conn.scalar(
                sa.text("SELECT count(*) FROM inbox WHERE event_id = :e"), {"e": report.event_id}
            )
        return n == 1

    await eventually(seen, timeout=30)
    assert await decision(claims, str(report_id), "no_coverage") is None, (
        "decided 'no coverage' against a catalogue that lacks the accident_plus edit the report "
        "was made after"
    )
    await f.send(plus_v1)
    opened = (await settled(claims, str(report_id)))["claims"]
    assert [(c["plan_code"], c["benefit"]) for c in opened] == [(plus, "paid")]
