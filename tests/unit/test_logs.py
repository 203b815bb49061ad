"""The JSON log format: one parseable object per line, ids from context, no PII."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import Iterator

import pytest
from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

from shared.logs import REDACTED, JsonFormatter, log_context, scrub

NATIONAL_ID = "110113198003041238"
PHONE = "13912345678"
CARD = "6210300012345678"


@pytest.fixture
def captured() -> Iterator[tuple[logging.Logger, io.StringIO]]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("membership"))
    logger = logging.getLogger(f"test.logs.{uuid.uuid4().hex}")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger, stream
    logger.removeHandler(handler)


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_line_has_the_fields_and_the_ids_of_its_context(
    captured: tuple[logging.Logger, io.StringIO],
) -> None:
    logger, stream = captured
    cid, eid = uuid.uuid4(), uuid.uuid4()
    logger.info("outside")
    with log_context(correlation_id=cid):
        with log_context(event_id=eid):
            logger.warning("inside %s", "both")
        logger.info("correlation only")
    outside, inside, corr = lines(stream)
    assert set(outside) >= {"time", "level", "service", "logger", "message", "correlation_id", "event_id"}
    assert outside["correlation_id"] is None and outside["event_id"] is None
    assert inside == inside | {
        "level": "WARNING",
        "service": "membership",
        "message": "inside both",
        "correlation_id": str(cid),
        "event_id": str(eid),
    }
    assert corr["correlation_id"] == str(cid) and corr["event_id"] is None
    assert str(outside["time"]).endswith("Z")


def test_an_exception_stays_on_one_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    try:
        raise ValueError("bad\nthing")
    except ValueError:
        logger.exception("failed")
    assert len(stream.getvalue().splitlines()) == 1
    (line,) = lines(stream)
    assert line["exc_type"] == "ValueError" and "bad\nthing" in str(line["stack"])


def test_personal_identifiers_never_reach_a_line(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    logger.info("member %s phone %s card %s", NATIONAL_ID, PHONE, CARD)
    try:
        raise RuntimeError(f"duplicate national id {NATIONAL_ID[:-1]}x")
    except RuntimeError:
        logger.exception("failed")
    text = stream.getvalue()
    assert NATIONAL_ID not in text and PHONE not in text and CARD not in text
    assert NATIONAL_ID[:-1] not in text
    assert text.count(REDACTED) == 4


def test_scrub_leaves_ordinary_numbers_alone() -> None:
    ordinary = "offset 123456 at position 9876543210, took 1733131313131 ms, uuid 1b4e28ba-2fa1-11d2"
    assert scrub(ordinary) == ordinary


def test_trace_ids_come_from_the_current_span(captured: tuple[logging.Logger, io.StringIO]) -> None:
    logger, stream = captured
    ctx = SpanContext(trace_id=0xABC, span_id=0xDEF, is_remote=False, trace_flags=TraceFlags(1))
    with trace.use_span(NonRecordingSpan(ctx)):
        logger.info("traced")
    logger.info("untraced")
    traced, untraced = lines(stream)
    assert traced["trace_id"] == f"{0xABC:032x}" and traced["span_id"] == f"{0xDEF:016x}"
    assert "trace_id" not in untraced
