"""Structured logs: one JSON object per line, for every logger in the process.

Fields: ``time`` (UTC, ISO 8601), ``level``, ``service``, ``logger``, ``message``, and when known
``correlation_id``, ``event_id`` (from ``log_context``), ``trace_id``/``span_id`` (the current
OpenTelemetry span, when tracing is on and a span is active: shared/tracing.py), ``exc_type``/``stack``.
Uvicorn's and faststream's loggers are routed through the same formatter, so log files carry no
colour codes and every line parses.

PII: code never logs personal data; as a second line of defence every message and stack trace is
scrubbed of what looks like a Chinese national ID, mobile number or bank card number.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import logging.config
import re
import traceback
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from opentelemetry import trace as _otel_trace

_correlation_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("correlation_id", default=None)
_event_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("event_id", default=None)

#: National ID (18 chars, last may be X), mainland mobile number, bank card (16-19 digits), each
#: standing alone (not part of a longer number such as an offset or a timestamp).
_PII = re.compile(
    r"(?<![\dA-Za-z])(?:\d{17}[\dXx]|1[3-9]\d{9}|\d{16,19})(?![\dA-Za-z])",
)
REDACTED = "[redacted]"

#: Attributes every LogRecord has; anything else was passed with ``extra=`` and is kept.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
#: Extras worth keeping (faststream passes topic, group_id, message_id).
_EXTRAS = ("topic", "group_id", "message_id", "consumer", "partition", "offset")


def scrub(text: str) -> str:
    """``text`` with anything that looks like a personal identifier replaced."""
    return _PII.sub(REDACTED, text)


@contextlib.contextmanager
def log_context(*, correlation_id: object = None, event_id: object = None) -> Iterator[None]:
    """Within the block, every log line carries these ids (``None`` leaves one as it was)."""
    tokens = []
    if correlation_id is not None:
        tokens.append((_correlation_id, _correlation_id.set(str(correlation_id))))
    if event_id is not None:
        tokens.append((_event_id, _event_id.set(str(event_id))))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


def current_ids() -> dict[str, str]:
    ids = {}
    if (cid := _correlation_id.get()) is not None:
        ids["correlation_id"] = cid
    if (eid := _event_id.get()) is not None:
        ids["event_id"] = eid
    return ids


def _trace_ids() -> dict[str, str]:
    ctx = _otel_trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return {}
    return {"trace_id": f"{ctx.trace_id:032x}", "span_id": f"{ctx.span_id:016x}"}


class JsonFormatter(logging.Formatter):
    """A log record as one line of JSON."""

    def __init__(self, service: str = "") -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        try:
            message = record.getMessage()
        except Exception:  # a broken %-format must not lose the line
            message = f"{record.msg!s} {record.args!r}"
        line: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": scrub(message),
            "correlation_id": None,
            "event_id": None,
        }
        line.update(current_ids())
        line.update(_trace_ids())
        for key in _EXTRAS:
            value = record.__dict__.get(key)
            if value not in (None, "") and key not in _STANDARD:
                line[key] = scrub(str(value))
        if record.exc_info and record.exc_info[0] is not None:
            line["exc_type"] = record.exc_info[0].__name__
            line["stack"] = scrub("".join(traceback.format_exception(*record.exc_info)))
        elif record.stack_info:
            line["stack"] = scrub(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


#: Loggers that bring their own (coloured, plain-text) handlers: routed to ours instead.
ROUTED_LOGGERS = (
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "faststream",
    "faststream.access",
    "faststream.access.kafka",
    "aiokafka",
)


#: OpenTelemetry loggers that write what a client or producer sent: the TraceState parser logs a
#: refused ``tracestate`` member verbatim at WARNING, the propagators log each oversized header.
#: Any HTTP client (or Kafka producer) could write text of its choosing, personal data included,
#: into our log per request; below ERROR they are silent (refused context is simply dropped).
ECHOING_LOGGERS = (
    "opentelemetry.trace.span",
    "opentelemetry.trace.propagation",
    "opentelemetry.baggage",
)


def silence_echoing_loggers() -> None:
    """Raise ``ECHOING_LOGGERS`` to ERROR, whoever configured logging (tracing.install calls it)."""
    for name in ECHOING_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level < logging.ERROR:
            logger.setLevel(logging.ERROR)


def logging_config(service: str, level: str) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document; also given to uvicorn as its ``log_config``."""
    lvl = level.upper()
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": JsonFormatter, "service": service}},
        "handlers": {
            "json": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"}
        },
        "root": {"handlers": ["json"], "level": lvl},
        # No handlers of their own (dictConfig removes the ones they installed): they propagate.
        "loggers": {
            **{name: {"handlers": [], "propagate": True, "level": lvl} for name in ROUTED_LOGGERS},
            **{name: {"propagate": True, "level": "ERROR"} for name in ECHOING_LOGGERS},
        },
    }


def configure(service: str, level: str) -> None:
    """Make every logger in this process write JSON lines to stderr."""
    logging.config.dictConfig(logging_config(service, level))
