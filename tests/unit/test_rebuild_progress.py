"""The rebuild's progress display: one rewritten line on a terminal, sparse log lines otherwise,
and a final summary with count and rate."""

from __future__ import annotations

import io
import logging

import pytest

from shared.projections import RebuildProgress


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_terminal_gets_one_rewritten_line_with_rate_and_eta() -> None:
    clock, out = FakeClock(), Tty()
    progress = RebuildProgress(stream=out, clock=clock)
    progress(0, 1000)
    clock.now += 1.0
    progress(250, 1000)
    clock.now += 0.01  # too soon to redraw
    progress(260, 1000)
    clock.now += 0.99
    progress(1000, 1000)
    lines = out.getvalue().split("\r")[1:]
    assert lines[1] == "250/1,000 events (25 %), 250 events/s, ETA 3 s"
    assert len(lines) == 3  # the 260 update was throttled
    assert lines[2] == "1,000/1,000 events (100 %), 500 events/s\n"
    assert progress.summary() == "1,000 events in 2.0 s (500 events/s)"


def test_no_terminal_logs_every_few_seconds_and_the_end(caplog: pytest.LogCaptureFixture) -> None:
    clock, out = FakeClock(), io.StringIO()
    progress = RebuildProgress(stream=out, clock=clock, log_every=5.0)
    caplog.set_level(logging.INFO, logger="shared.projections")
    progress(0, 30_000)
    for done in range(1000, 30_001, 1000):
        clock.now += 1.0
        progress(done, 30_000)
    assert out.getvalue() == ""
    messages = [r.getMessage() for r in caplog.records]
    # 30 chunks a second apart: one line per 5 s (the first at 5 s) and one at the end.
    assert len(messages) == 6
    assert messages[0] == "rebuild: 5,000/30,000 events (17 %), 1,000 events/s, ETA 25 s"
    assert messages[-1] == "rebuild: 30,000/30,000 events (100 %), 1,000 events/s"


def test_an_empty_store_reports_zero_without_dividing_by_zero() -> None:
    clock, out = FakeClock(), Tty()
    progress = RebuildProgress(stream=out, clock=clock)
    progress(0, 0)
    assert out.getvalue() == "\r0/0 events, 0 events/s\n"
    assert progress.summary() == "0 events in 0.0 s (0 events/s)"
