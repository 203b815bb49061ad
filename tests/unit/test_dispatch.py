"""The one dispatch idiom: aggregates apply what they mark and refuse what they do not know."""

from __future__ import annotations

import uuid

import pytest

from shared.aggregate import Aggregate, UnaccountedEvent, applies
from shared.dispatch import HandlerTable
from shared.events import DomainEvent


class Opened(DomainEvent):
    thing_id: uuid.UUID


class Noted(DomainEvent):
    thing_id: uuid.UUID


class Forgotten(DomainEvent):
    thing_id: uuid.UUID


class Thing(Aggregate):
    stream_type = "Thing"
    ignores = (Noted,)

    def __init__(self, aggregate_id: str) -> None:
        super().__init__(aggregate_id)
        self.opened = False

    @applies(Opened)
    def _opened(self, e: Opened) -> None:
        self.opened = True


def test_marked_events_change_state_and_ignored_ones_only_count() -> None:
    tid = uuid.uuid4()
    thing = Thing.rehydrate(str(tid), [Opened(thing_id=tid), Noted(thing_id=tid)])
    assert thing.opened and thing.version == 2
    assert Thing.accounted_events() == {Opened, Noted}


def test_an_unaccounted_event_type_raises_instead_of_being_skipped() -> None:
    tid = uuid.uuid4()
    with pytest.raises(UnaccountedEvent, match="Forgotten"):
        Thing.rehydrate(str(tid), [Forgotten(thing_id=tid)])


def test_a_handler_table_names_what_it_neither_handles_nor_ignores() -> None:
    table: HandlerTable[object] = HandlerTable("t")
    table.on(Opened)(print)
    table.ignore(Noted)
    assert table.unaccounted([Opened, Noted, Forgotten]) == ["Forgotten"]
    assert table.by_name() == {"Opened": print} and table.ignored_names() == {"Noted"}
    with pytest.raises(ValueError, match="twice"):
        table.on(Opened)(print)
