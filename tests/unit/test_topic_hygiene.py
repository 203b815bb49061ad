"""The suite's topic cleanup: which names it deletes, and that it waits for the last session."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.topic_hygiene import TEST_TOPIC, tidy_topics


@pytest.mark.parametrize(
    "name",
    [
        "test.0123456789ab.events",
        "test.0123456789.membership.dlq",
        "svc.0123456789.membership.events",
        "fuzz.3dfb92a121.mediation.events",
        "e2e.02d3fe2574.claims.events.dlq",
        "ops.0123456789ab.claims.events",
        "prod.0123456789.membership.events",
        "logs.102770d80e.activities.events",
        "bench.e2e.raw.115124f2",
    ],
)
def test_names_the_suite_makes_up_are_deleted(name: str) -> None:
    assert TEST_TOPIC.match(name)


@pytest.mark.parametrize(
    "name",
    [
        "membership.events",
        "claims.events.dlq",
        "__consumer_offsets",
        "test.events",  # no token: could be someone's own topic
        "test.not-hex-token.events",
        "staging.0123456789ab.membership.events",
        "bench.e2e.raw.115124f2.extra",
    ],
)
def test_other_topics_are_kept(name: str) -> None:
    assert not TEST_TOPIC.match(name)


def test_a_lone_session_cleans_when_it_arrives_and_when_it_leaves(tmp_path: Path) -> None:
    calls: list[str] = []
    with tidy_topics("broker", tmp_path, delete=calls.append):
        assert calls == ["broker"]
        assert (tmp_path / f"{os.getpid()}.pid").exists()
    assert calls == ["broker", "broker"]
    assert not (tmp_path / f"{os.getpid()}.pid").exists()


def test_nothing_is_deleted_while_another_live_session_holds_the_broker(tmp_path: Path) -> None:
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        (tmp_path / f"{other.pid}.pid").touch()
        calls: list[str] = []
        with tidy_topics("broker", tmp_path, delete=calls.append):
            pass
        assert calls == []
    finally:
        other.kill()
        other.wait()


def test_a_killed_sessions_file_does_not_block_the_cleanup(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f"{dead.pid}.pid").touch()
    calls: list[str] = []
    with tidy_topics("broker", tmp_path, delete=calls.append):
        pass
    assert calls == ["broker", "broker"]
    assert not (tmp_path / f"{dead.pid}.pid").exists()
