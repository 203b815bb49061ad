"""A consumer that follows only some upstream streams (``follows``) must follow every stream its
reactions read: an event of any other stream is passed over before it reaches them (issue 8).

Which stream carries which event is taken from the producer's own aggregates (what each applies
or ignores), so adding a reaction to, say, an injury report in a members read model fails here
until its consumer follows ``InjuryReport`` streams too."""

from __future__ import annotations

import pytest

from services.membership import domain as membership
from shared.aggregate import Aggregate
from shared.dispatch import HandlerTable
from shared.events import DomainEvent


def _streams_of_membership() -> dict[type[DomainEvent], set[str]]:
    carried: dict[type[DomainEvent], set[str]] = {}
    for value in vars(membership).values():
        if isinstance(value, type) and issubclass(value, Aggregate) and value is not Aggregate:
            for event in value.accounted_events():
                carried.setdefault(event, set()).add(value.stream_type)
    return carried


def _tables() -> list[tuple[str, HandlerTable[object], tuple[str, ...]]]:
    from services.activities import handlers as activities
    from services.counseling import handlers as counseling
    from services.counseling import projections as counseling_models
    from services.mediation import handlers as mediation
    from services.mediation import projections as mediation_models

    return [
        ("activities.members", activities.member_reactions, activities.MEMBER_STREAMS),  # type: ignore[list-item]
        ("counseling.members", counseling_models.members, counseling.MEMBER_STREAMS),  # type: ignore[list-item]
        ("mediation.unions", mediation_models.MEMBERSHIP, mediation.MEMBER_STREAMS),  # type: ignore[list-item]
    ]


def test_every_membership_event_has_a_stream() -> None:
    carried = _streams_of_membership()
    from shared.contracts import membership as contract

    missing = [t.event_type for t in contract.registry.types() if t not in carried]
    assert missing == []
    assert {s for streams in carried.values() for s in streams} >= {"Member", "Union", "InjuryReport"}


@pytest.mark.parametrize("name,table,follows", _tables(), ids=lambda v: v if isinstance(v, str) else "")
def test_a_consumer_follows_every_stream_its_reactions_read(
    name: str, table: HandlerTable[object], follows: tuple[str, ...]
) -> None:
    carried = _streams_of_membership()
    needed = {stream for event in table.handled() for stream in carried[event]}
    assert needed <= set(follows), f"{name} reacts to events of {needed - set(follows)} streams"
    assert "InjuryReport" not in follows, f"{name}: injury reports are none of its business"


def test_the_wired_consumers_follow_what_their_handlers_declare() -> None:
    from services.activities import handlers as activities
    from services.activities.app import build_runtime as activities_runtime
    from services.claims.app import build_runtime as claims_runtime
    from services.counseling import handlers as counseling
    from services.counseling.app import build_runtime as counseling_runtime
    from services.mediation import handlers as mediation
    from services.mediation.app import build_runtime as mediation_runtime
    from services.mediation.settings import MediationSettings

    follows = {
        sub.group_id: sub.loop.inbox.follows
        for runtime in (
            claims_runtime(),
            mediation_runtime(MediationSettings()),
            counseling_runtime(),
            activities_runtime(),
        )
        for sub in runtime.subscriptions
    }
    assert follows == {
        "claims.coverage": None,  # it reacts to reports, plans, members and unions alike
        "mediation.unions": frozenset(mediation.MEMBER_STREAMS),
        "counseling.members": frozenset(counseling.MEMBER_STREAMS),
        "activities.members": frozenset(activities.MEMBER_STREAMS),
    }
