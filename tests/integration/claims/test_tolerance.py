"""The claims coverage consumer (group claims.coverage) on the real broker and database tolerates
what a newer membership release may send: unknown envelope and payload fields, unknown event
types, and either schema version of an evolved event. Nothing is dead-lettered."""

from __future__ import annotations

import json
import uuid

import pytest
import sqlalchemy as sa

from shared.contracts import membership as m
from shared.envelope import EventEnvelope
from shared.tables import inbox
from tests.integration.claims.conftest import ClaimsUnderTest
from tests.integration.claims.test_injury_reaction import AUG_2, YEAR, settled
from tests.kafka_support import eventually, read_topic

pytestmark = pytest.mark.integration


def grown(env: EventEnvelope) -> bytes:
    """The envelope as a newer producer might write it: extra fields at both levels."""
    raw = json.loads(env.to_bytes())
    raw["trace"] = {"span": "0af7651916cd43dd"}
    raw["data"]["added_in_a_later_release"] = [1, "two", None]
    return json.dumps(raw, ensure_ascii=False).encode()


async def test_unknown_fields_unknown_types_and_both_versions_are_tolerated(claims: ClaimsUnderTest) -> None:
    f, member, district = claims.feed, uuid.uuid4(), uuid.uuid4()
    street = uuid.uuid4()
    union_v2 = f.envelope(
        "Union",
        street,
        m.UnionRegistered(union_id=street, name="石园街道总工会", level="street", parent_union_id=district),
    )
    old = uuid.uuid4()
    union_v1 = f.envelope(
        "Union", old, m.UnionRegisteredV1(union_id=old, name="旧工会", level="grassroots", parent_id=street)
    )
    merged = union_v1.model_copy(
        update={
            "event_id": uuid.uuid4(),
            "event_type": "UnionsMerged",
            "aggregate_version": 2,
            "data": {"into": str(street)},
        }
    )
    story = [f.joined(member), f.card(member), f.enrolled(member, *YEAR)]
    report = f.injury(member, AUG_2)
    for env in [union_v2, union_v1, merged, *story, report]:
        await f.producer.send_and_wait(f.topic, grown(env), key=env.kafka_key(), headers=env.kafka_headers())

    opened = (await settled(claims, report.aggregate_id))["claims"]
    assert sorted(c["plan_code"] for c in opened) == ["accident_injury", "card_non_work_accident"]

    async def all_handled() -> bool:
        """Recorded in the inbox: processed, not dropped (they sit on other partitions)."""
        async with claims.runtime.engine.connect() as conn:
            handled = set(
                await conn.scalars(sa.select(inbox.c.event_id).where(inbox.c.consumer == "coverage"))
            )
        return {union_v2.event_id, union_v1.event_id, merged.event_id} <= handled

    assert await eventually(all_handled, timeout=30)
    dlq = await read_topic(claims.settings.kafka_bootstrap_servers, f"{f.topic}.dlq", expect=1, timeout=3)
    assert dlq == []
