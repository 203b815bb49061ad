"""Issue-14 adversarial review of the membership timeline of mediation cases (real broker and
database, group membership.mediation). ``test_withstood_*``: attacks the consumer withstood."""

from __future__ import annotations

import json
import uuid
from datetime import date
from typing import Any

import pytest
import sqlalchemy as sa

from services.membership.tables import mediation_cases, mediation_events
from shared.contracts import mediation as md
from shared.tables import inbox
from tests.integration.membership.conftest import Service
from tests.integration.membership.support import STAFF, new_member, union_tree
from tests.integration.membership.test_mediation_timeline import MediationFeed, _received, _send
from tests.kafka_support import eventually

pytestmark = pytest.mark.integration


async def test_withstood_older_events_redelivered_after_newer_ones_change_nothing(service: Service) -> None:
    """A relay that crashed after publishing re-publishes a case's events (same ids) after newer
    ones were consumed, in any order: CaseReceived and CaseEscalated again after CaseWithdrawn.
    The timeline keeps one entry per event, and the case stays withdrawn (no regression to
    ``open`` or ``escalated``); nothing of the withdrawal's date is lost."""
    tree = await union_tree(service, "-mediation-adv14")
    mid = uuid.UUID((await new_member(service, tree["grassroots"]))["member_id"])
    street, district = uuid.UUID(tree["street"]), uuid.UUID(tree["district"])
    case = uuid.uuid4()
    feed = MediationFeed()
    received = feed("Case", case, _received(case, street, mid, "SY-2026-0777"))
    escalated = feed(
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
    )
    withdrawn = feed("Case", case, md.CaseWithdrawn(case_id=case, withdrawn_on=date(2026, 9, 25)))
    await _send(service, [received, escalated, withdrawn, escalated, received, withdrawn, received])

    async def entries() -> list[dict[str, Any]] | None:
        r = await service.client.get(f"/v1/members/{mid}/timeline", headers=STAFF)
        found = [t for t in r.json()["items"] if t["source"] == "mediation"]
        return found if "CaseWithdrawn" in [e["event_type"] for e in found] else None

    await eventually(entries, timeout=60)
    # Let the redeliveries behind the first CaseWithdrawn be consumed too: wait for the inbox.

    async with service.runtime.engine.connect() as conn:

        async def all_seen() -> bool:
            ids = [received.event_id, escalated.event_id, withdrawn.event_id]
            n = await conn.scalar(
                sa.select(sa.func.count()).select_from(inbox).where(inbox.c.event_id.in_(ids))
            )
            await conn.commit()
            return n == 3

        await eventually(all_seen, timeout=30)
        assert await conn.scalar(sa.select(sa.func.count()).where(mediation_events.c.case_id == case)) == 3
        row = (
            (await conn.execute(sa.select(mediation_cases).where(mediation_cases.c.case_id == case)))
            .mappings()
            .one()
        )
        assert (row["status"], row["tier"], row["closed_on"]) == ("withdrawn", "district", date(2026, 9, 25))
    final = await entries()
    assert final is not None
    assert [(e["event_type"], e["data"]["status"]) for e in final] == [
        ("CaseReceived", "open"),
        ("CaseEscalated", "escalated"),
        ("CaseWithdrawn", "withdrawn"),
    ]
    text = json.dumps(final, ensure_ascii=False)
    assert str(district) not in text and str(street) not in text  # no union ids, only tiers
