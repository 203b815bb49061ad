"""The session-wide check of emitted events can fail (it is not a pass by construction)."""

from __future__ import annotations

import uuid
from datetime import date

from shared.contracts import membership as m
from shared.eventstore import EventStore
from tests.contract_check import EmittedEvents


def envelopes(event: m.DomainEvent, producer: str = "membership") -> list:  # type: ignore[type-arg]
    return EventStore(producer, m.registry).envelopes(
        "Member", str(uuid.uuid4()), 0, [event], correlation_id=uuid.uuid4()
    )


def test_valid_events_pass_and_wrong_ones_are_reported() -> None:
    check = EmittedEvents()
    member = uuid.uuid4()
    check.record(envelopes(m.CardIssued(member_id=member, card_last4="1234", issued_on=date(2016, 1, 1))))
    assert check.violations == [] and check.seen == {("CardIssued", 1): 1}

    bad = m.CardIssued.model_construct(member_id=member, card_last4="12345678", issued_on=date(2016, 1, 1))
    check.record(envelopes(bad))
    assert len(check.violations) == 1 and "card_last4" in check.violations[0]


def test_an_event_without_a_published_schema_is_a_violation_and_test_samples_are_ignored() -> None:
    check = EmittedEvents()
    [env] = envelopes(m.CardIssued(member_id=uuid.uuid4(), card_last4="1234", issued_on=date(2016, 1, 1)))
    check.record([env.model_copy(update={"schema_version": 9})])
    assert check.violations and "no published schema" in check.violations[0]
    check = EmittedEvents()
    check.record([env.model_copy(update={"producer": "core-test", "event_type": "Counted"})])
    assert check.violations == [] and check.seen == {}
