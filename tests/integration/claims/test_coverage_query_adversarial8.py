"""Review 8: claims' driver statements against the SQLAlchemy statements they replaced.

``load_coverage`` is now one statement (cards and enrollments as arrays of anonymous rows, decoded
by asyncpg); ``_reference_load_coverage`` is the three-query version it replaced (commit
122bc68~1), kept here to compare against on awkward members. The claim and decision inserts are
compared with the SQLAlchemy inserts they replaced in the same way.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from services.claims import projections
from services.claims import tables as t
from services.claims.domain import CardSpell, EnrollmentFact, MemberCoverage
from shared.contracts import claims as c
from shared.contracts.common import Benefit

pytestmark = pytest.mark.integration


@pytest.fixture
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(t.metadata.create_all)
    yield engine
    await engine.dispose()


async def _reference_load_coverage(conn: AsyncConnection, member_id: uuid.UUID) -> MemberCoverage | None:
    """``load_coverage`` as it was before the driver (three SQLAlchemy queries)."""
    args = {"member_id": member_id}
    member = (
        (await conn.execute(sa.select(t.coverage_members).where(t.coverage_members.c.member_id == member_id)))
        .mappings()
        .first()
    )
    if member is None or member["joined_on"] is None:
        return None
    cards = (
        await conn.execute(
            sa.select(t.coverage_cards)
            .where(t.coverage_cards.c.member_id == sa.bindparam("member_id"))
            .order_by(t.coverage_cards.c.id),
            args,
        )
    ).mappings()
    enrollments = (
        await conn.execute(
            sa.select(t.coverage_enrollments).where(
                t.coverage_enrollments.c.member_id == sa.bindparam("member_id")
            ),
            args,
        )
    ).mappings()
    return MemberCoverage(
        member_id=member_id,
        joined_on=member["joined_on"],
        left_on=member["left_on"],
        left_version=member["left_version"],
        cards=tuple(
            CardSpell(
                c["card_last4"],
                c["issued_on"],
                c["cancelled_on"],
                c["issued_version"],
                c["cancelled_version"],
            )
            for c in cards
        ),
        enrollments=tuple(
            EnrollmentFact(
                e["enrollment_id"],
                e["plan_code"],
                e["shares"],
                e["starts_on"],
                e["ends_on"],
                e["cancelled_on"],
                e["recorded_on"],
                e["recorded_version"],
                e["cancelled_version"],
            )
            for e in enrollments
        ),
    )


def _as_compared(coverage: MemberCoverage | None) -> Any:
    """Enrollments in a fixed order: the old query had no ORDER BY (the domain sorts by id)."""
    if coverage is None:
        return None
    return (
        coverage.member_id,
        coverage.joined_on,
        coverage.left_on,
        coverage.left_version,
        coverage.cards,
        tuple(sorted(coverage.enrollments, key=lambda e: str(e.enrollment_id))),
    )


async def _member(conn: AsyncConnection, joined_on: date | None, **extra: Any) -> uuid.UUID:
    member_id = uuid.uuid4()
    await conn.execute(
        sa.insert(t.coverage_members).values(member_id=member_id, joined_on=joined_on, **extra)
    )
    return member_id


async def _card(conn: AsyncConnection, member_id: uuid.UUID, last4: str, issued: date, **extra: Any) -> None:
    await conn.execute(
        sa.insert(t.coverage_cards).values(member_id=member_id, card_last4=last4, issued_on=issued, **extra)
    )


async def _enrollment(conn: AsyncConnection, member_id: uuid.UUID, plan: str, **extra: Any) -> None:
    values: dict[str, Any] = {
        "enrollment_id": uuid.uuid4(),
        "member_id": member_id,
        "plan_code": plan,
        "shares": 1,
        "starts_on": date(2015, 1, 1),
        "ends_on": date(2015, 12, 31),
        **extra,
    }
    await conn.execute(sa.insert(t.coverage_enrollments).values(**values))


async def test_load_coverage_matches_the_three_query_version(engine: AsyncEngine) -> None:
    """No row, joined_on NULL, no cards or enrollments, several cards (id order kept, fields that
    would need quoting in a text record), cancelled and NULL-versioned facts, many enrollments,
    other members' rows never mixed in."""
    async with engine.begin() as conn:
        nobody = uuid.uuid4()
        not_joined = await _member(conn, None)
        await _card(conn, not_joined, "1111", date(2015, 1, 1))
        bare = await _member(conn, date(2012, 5, 1))
        rich = await _member(conn, date(2012, 5, 1), left_on=date(2016, 1, 2), left_version=9)
        for i, last4 in enumerate(['9,9"', "(0)", "a\\b", "", "\u00e9\U0001f600", "NULL"]):
            await _card(
                conn,
                rich,
                last4,
                date(2014, 1, 1 + i),
                cancelled_on=date(2015, 1, 1) if i % 2 else None,
                issued_version=None if i == 0 else i,
                cancelled_version=i + 10 if i % 2 else None,
            )
        for i in range(120):
            await _enrollment(
                conn,
                rich,
                "accident_injury" if i % 3 else 'hospital, "cash"',
                shares=i,
                cancelled_on=date(2015, 6, 1) if i % 4 == 0 else None,
                recorded_on=None if i % 5 == 0 else date(2014, 12, 1),
                recorded_version=None if i % 7 == 0 else i,
                cancelled_version=i + 200 if i % 4 == 0 else None,
            )
        other = await _member(conn, date(2013, 1, 1))
        await _card(conn, other, "2222", date(2013, 2, 1))
        await _enrollment(conn, other, "accident_injury")
        only_cards = await _member(conn, date(2012, 1, 1))
        await _card(conn, only_cards, "3333", date(2013, 2, 1))
    async with engine.connect() as conn:
        for member_id in (nobody, not_joined, bare, rich, other, only_cards):
            new = await projections.load_coverage(conn, member_id)
            old = await _reference_load_coverage(conn, member_id)
            assert _as_compared(new) == _as_compared(old), member_id
        rich_coverage = await projections.load_coverage(conn, rich)
        assert rich_coverage is not None and len(rich_coverage.cards) == 6
        assert len(rich_coverage.enrollments) == 120
        assert await projections.load_coverage(conn, nobody) is None
        assert await projections.load_coverage(conn, not_joined) is None
        assert await projections.load_coverage(conn, bare) == MemberCoverage(bare, date(2012, 5, 1))


async def test_seen_version_and_report_decided_on_missing_rows(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        member = await _member(conn, date(2012, 5, 1))
    async with engine.connect() as conn:
        assert await projections.seen_version(conn, uuid.uuid4()) == 0
        assert await projections.seen_version(conn, member) == 0
        assert await projections.report_decided(conn, uuid.uuid4()) is False


async def test_claim_and_decision_inserts_store_what_the_sqlalchemy_inserts_stored(
    engine: AsyncEngine,
) -> None:
    """Empty and non-empty required documents, a card claim (no enrollment), a decision with no
    reasons: the rows the driver writes equal those the old ``insert(...)`` wrote."""
    at = datetime(2016, 8, 10, 1, 2, 3, 456789, tzinfo=UTC)
    cases = [
        ([], Benefit.CARD, None),
        (["id_card", 'quote"d', "\u533b\u9662"], Benefit.PAID, uuid.uuid4()),
    ]
    for docs, benefit, enrollment in cases:
        member, report = uuid.uuid4(), uuid.uuid4()
        new_id, old_id = uuid.uuid4(), uuid.uuid4()
        event = c.ClaimFiled(
            claim_id=new_id,
            member_id=member,
            report_id=report,
            plan_code="accident_injury",
            benefit=benefit,
            enrollment_id=enrollment,
            required_documents=docs,
            incident_on=date(2016, 8, 1),
            filed_on=date(2016, 8, 10),
        )
        async with engine.begin() as conn:
            await projections._claim_filed(conn, at, event)
            await conn.execute(
                insert(t.claims).on_conflict_do_nothing(),
                {
                    "claim_id": old_id,
                    "member_id": member,
                    "report_id": report,
                    "plan_code": "accident_injury",
                    "benefit": benefit.value,
                    "enrollment_id": enrollment,
                    "status": "filed",
                    "required_documents": docs,
                    "missing_documents": docs,
                    "incident_on": date(2016, 8, 1),
                    "filed_on": date(2016, 8, 10),
                    "updated_at": at,
                },
            )
            await projections._claim_filed(conn, at, event)  # a replay: nothing more
        async with engine.connect() as conn:
            rows = {
                r["claim_id"]: {k: v for k, v in r.items() if k != "claim_id"}
                for r in (
                    await conn.execute(sa.select(t.claims).where(t.claims.c.member_id == member))
                ).mappings()
            }
            decision = (
                (
                    await conn.execute(
                        sa.select(t.report_decisions).where(t.report_decisions.c.report_id == report)
                    )
                )
                .mappings()
                .one()
            )
        assert set(rows) == {new_id, old_id}
        assert rows[new_id] == rows[old_id]
        assert rows[new_id]["required_documents"] == docs == rows[new_id]["missing_documents"]
        assert rows[new_id]["received_documents"] == []
        assert dict(decision) == {"report_id": report, "member_id": member, "reasons": [], "decided_at": at}


async def test_report_facts_is_seen_version_decided_and_coverage_in_one(engine: AsyncEngine) -> None:
    """``report_facts`` (the report path's single statement) says what the three reads say, for
    an unknown member, a member with no coverage row yet, and a covered member with a decided
    and an undecided report."""
    async with engine.begin() as conn:
        covered = await _member(conn, date(2014, 3, 1), seen_version=7)
        await _card(conn, covered, "4321", date(2014, 3, 2))
        await _enrollment(conn, covered, "accident_injury")
        not_joined = await _member(conn, None, seen_version=2)
        decided_report = uuid.uuid4()
        await conn.execute(
            sa.insert(t.report_decisions).values(
                report_id=decided_report, member_id=covered, reasons=[], decided_at=datetime.now(UTC)
            )
        )
    async with engine.connect() as conn:
        for member in (covered, not_joined, uuid.uuid4()):
            for report in (decided_report, uuid.uuid4()):
                facts = await projections.report_facts(conn, member, report)
                assert facts.seen_version == await projections.seen_version(conn, member)
                assert facts.decided == await projections.report_decided(conn, report)
                assert _as_compared(facts.coverage) == _as_compared(
                    await _reference_load_coverage(conn, member)
                )
        facts = await projections.report_facts(conn, covered, decided_report)
        assert facts.seen_version == 7 and facts.decided and facts.coverage is not None
        assert len(facts.coverage.cards) == 1 and len(facts.coverage.enrollments) == 1
