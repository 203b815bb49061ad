"""Adversarial review of issue 11 point 8 (tracing) and the HTTP layer order, in-process.

Tests whose docstring starts with ``FIXED`` failed on the code they were written against (main at
0291b71): each showed a defect, fixed since (branch fix11), and now guards against its return; the
rest of each docstring describes the defect as found. Those starting with ``HOLDS`` are attacks the
code withstood, kept as regression tests.

Hostile input here is what any HTTP client can send (``traceparent``, ``tracestate``, the method)
and what any Kafka producer can put in record headers."""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import StreamingResponse
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from prometheus_client import REGISTRY

from services.claims.app import ClaimsSettings, build_runtime
from shared import tracing
from tests.cdc_form import debezium_record

REPO = Path(__file__).resolve().parents[2]
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
TRACEPARENT = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
#: What a stored ``traceparent`` must look like: version 00, non-zero ids (W3C Trace Context).
VALID = re.compile(r"00-(?!0{32})[0-9a-f]{32}-(?!0{16})[0-9a-f]{16}-[0-9a-f]{2}")
#: The W3C limit the propagator applies to tracestate (and 512 for traceparent), plus JSON framing.
MAX_STORED = 8192 + 512 + 64
STAFF = {"Authorization": "Bearer local-staff-token"}


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.install(provider)
    try:
        yield exporter
    finally:
        tracing.install(None)
        provider.shutdown()


@pytest.fixture
def seen() -> list[str | None]:
    return []


def _app(seen: list[str | None]) -> FastAPI:
    app: FastAPI = build_runtime(ClaimsSettings(max_body_bytes=1024)).http_app([], title="adversarial11")

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        seen.append(tracing.current_trace_context())  # what an append here would store
        return {"thing_id": thing_id}

    @app.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b"x" * 65536

        return StreamingResponse(chunks(), media_type="application/octet-stream")

    return app


@pytest.fixture
async def http(seen: list[str | None]) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=_app(seen))
    async with httpx.AsyncClient(transport=transport, base_url="http://adversarial11") as client:
        yield client


def _stored(seen: list[str | None]) -> dict[str, str]:
    [context] = seen
    assert context is not None
    assert len(context) <= MAX_STORED, f"{len(context)} characters of trace context stored"
    carrier: dict[str, str] = json.loads(context)
    assert VALID.fullmatch(carrier["traceparent"]), carrier
    return carrier


# --- hostile traceparent / tracestate over HTTP: withstood ------------------------------------

HOSTILE_TRACEPARENTS: list[bytes] = [
    b"garbage",
    b"",
    b"00-" + b"0" * 32 + b"-00f067aa0ba902b7-01",  # all-zero trace id
    f"00-{TRACE_ID}-{'0' * 16}-01".encode(),  # all-zero span id
    f"ff-{TRACE_ID}-00f067aa0ba902b7-01".encode(),  # version ff is forbidden
    f"00-{TRACE_ID}-00f067aa0ba902b7-01-extra".encode(),  # version 00 has no extra fields
    f"00-{TRACE_ID.upper()}-00F067AA0BA902B7-01".encode(),  # upper-case hex is invalid
    f"00-{TRACE_ID}-00f067aa0ba902b7-01".encode() + b"x" * 60_000,  # huge
    "00-4bf92f3577b34da6a3ce929d0e0e47é6-00f067aa0ba902b7-01".encode(),  # non-ASCII (UTF-8 bytes)
    b"00-\xff\xfe" + b"a" * 30 + b"-00f067aa0ba902b7-01",  # not even UTF-8
    b"-".join([b"00"] * 2000),
]


@pytest.mark.parametrize("raw", HOSTILE_TRACEPARENTS, ids=lambda r: repr(r[:24]))
async def test_a_hostile_traceparent_starts_a_fresh_valid_trace(
    spans: InMemorySpanExporter, http: httpx.AsyncClient, seen: list[str | None], raw: bytes
) -> None:
    """HOLDS. Never a 500; what an append would store is a valid context of the server's own span
    (a new trace, not the client's bytes), bounded in size; the answer keeps its correlation id."""
    r = await http.get("/things/1", headers=[(b"traceparent", raw), (b"tracestate", b"a=1")])
    assert r.status_code == 200, r.text
    assert uuid.UUID(r.headers["x-correlation-id"])
    carrier = _stored(seen)
    assert raw.decode("latin-1") not in carrier["traceparent"] or not raw
    [span] = spans.get_finished_spans()
    assert span.parent is None, "an invalid traceparent must not be continued"


HOSTILE_TRACESTATES: list[bytes] = [
    b",".join(f"k{i}=v{i}".encode() for i in range(40)),  # more than 32 members
    b"a=" + b"x" * 9000,  # over the 8192 limit
    b",".join(b"k%d=%s" % (i, b"v" * 250) for i in range(32)),  # 32 members of 256: at the limit
    b"a=1,a=2",  # duplicate key
    "a=\u00e9".encode(),  # non-ASCII value
    b"=,=,=,,,",
    b"a=1," * 3000,
]


@pytest.mark.parametrize("raw", HOSTILE_TRACESTATES, ids=lambda r: repr(r[:24]))
async def test_a_hostile_tracestate_is_bounded_and_never_fails(
    spans: InMemorySpanExporter, http: httpx.AsyncClient, seen: list[str | None], raw: bytes
) -> None:
    """HOLDS. The caller's trace is continued; its tracestate is kept only when valid W3C (at most
    32 members, 8192 characters), so what is stored with an event is bounded."""
    r = await http.get("/things/1", headers=[(b"traceparent", TRACEPARENT.encode()), (b"tracestate", raw)])
    assert r.status_code == 200, r.text
    carrier = _stored(seen)
    assert tracing.trace_id_of(carrier["traceparent"]) == TRACE_ID
    state = carrier.get("tracestate", "")
    assert len(state) <= 8192 and state.count(",") < 32


async def test_duplicate_traceparent_headers_never_fail(
    spans: InMemorySpanExporter, http: httpx.AsyncClient, seen: list[str | None]
) -> None:
    """HOLDS. Two traceparent header lines (one valid, one hostile, in both orders): 200, and
    what is stored is a valid context."""
    for pair in ([TRACEPARENT.encode(), b"garbage"], [b"garbage", TRACEPARENT.encode()]):
        seen.clear()
        headers = [(b"traceparent", value) for value in pair]
        r = await http.get("/things/1", headers=headers)
        assert r.status_code == 200
        _stored(seen)


async def test_the_span_never_names_the_raw_path(
    spans: InMemorySpanExporter, http: httpx.AsyncClient
) -> None:
    """HOLDS. A member-like id in the path is in neither the span name nor an attribute."""
    member = "110101199003077777"
    assert (await http.get(f"/things/{member}")).status_code == 200
    assert (await http.get(f"/nowhere/{member}")).status_code == 404
    for span in spans.get_finished_spans():
        assert member not in span.name
        assert all(member not in str(v) for v in (span.attributes or {}).values()), span.attributes


@pytest.mark.parametrize(
    ("method", "path", "content", "status"),
    [
        ("GET", "/nowhere", None, 404),
        ("DELETE", "/healthz", None, 405),
        ("POST", "/v1/x", b"x" * 2048, 413),
        ("HEAD", "/healthz", None, 405),
    ],
)
@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
async def test_every_answer_echoes_the_correlation_id(
    seen: list[str | None], method: str, path: str, content: bytes | None, status: int, on: bool
) -> None:
    """HOLDS. 404, 405, 413 (and 401/422/500/503 in test_middleware_order.py), tracing off or on."""
    provider = TracerProvider() if on else None
    tracing.install(provider)
    try:
        transport = httpx.ASGITransport(app=_app(seen))
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            cid = str(uuid.uuid4())
            r = await client.request(
                method, path, content=content, headers={**STAFF, "X-Correlation-ID": cid}
            )
            assert r.status_code == status
            assert r.headers["x-correlation-id"] == cid
    finally:
        tracing.install(None)
        if provider is not None:
            provider.shutdown()


async def test_a_streamed_large_answer_keeps_the_correlation_id(
    spans: InMemorySpanExporter, http: httpx.AsyncClient
) -> None:
    """HOLDS. A 4 MiB streamed body: the header is set once on the start message, body intact."""
    cid = str(uuid.uuid4())
    async with http.stream("GET", "/stream", headers={"X-Correlation-ID": cid}) as r:
        assert r.headers["x-correlation-id"] == cid
        size = sum([len(chunk) async for chunk in r.aiter_bytes()])
    assert size == 64 * 65536


# --- hostile Kafka headers in the consumer's helpers: withstood -------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        [("traceparent", b"\x00" * 10)],
        [("traceparent", b"\xff" * 600), ("tracestate", b"\xfe" * 20000)],
        [("traceparent", TRACEPARENT.encode()), ("traceparent", b"garbage")],
        [("traceparent", None), ("tracestate", None)],
        [("traceparent", f"ff-{TRACE_ID}-00f067aa0ba902b7-01".encode())],
        [("TRACEPARENT", TRACEPARENT.encode())],
    ],
)
def test_hostile_record_headers_never_break_a_reaction_span(
    spans: InMemorySpanExporter, headers: list[tuple[str, bytes | None]]
) -> None:
    """HOLDS. Whatever the headers hold, the consumer span opens, and what a reaction appends
    carries a valid, bounded context."""
    carrier = tracing.carrier_from_headers(headers)
    with tracing.consumer_span("InjuryReported", uuid.uuid4(), "claims", carrier):
        stored = tracing.current_trace_context()
    assert stored is not None and len(stored) <= MAX_STORED
    assert VALID.fullmatch(json.loads(stored)["traceparent"])


# --- defects found, fixed (branch fix11) -----------------------------------------------------


async def test_a_hostile_tracestate_is_not_written_into_the_logs(
    spans: InMemorySpanExporter, http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """FIXED. OpenTelemetry's TraceState parser logs a member it refuses *verbatim* at WARNING
    (``Member doesn't match the w3c identifiers format %s``, logger ``opentelemetry.trace.span``),
    and the JSON formatter passes it on (it only scrubs ID/phone/card patterns). So any HTTP
    client writes up to 8 KiB of text of its choosing into the service's log per request (log
    flooding; personal data in a log line if a client puts it there, against issue 11 point 7).
    Reproduce: ``curl -H 'traceparent: 00-4bf9...-01' -H 'tracestate: Wang Xiaoming=...'`` with
    tracing on. Fix: raise ``opentelemetry.trace.span``'s level (or filter it) in shared/logs.py."""
    client_text = "Wang Xiaoming lives at 12 Chaoyang Road" + "-" * 400
    caplog.set_level(logging.WARNING)
    r = await http.get("/things/1", headers={"traceparent": TRACEPARENT, "tracestate": client_text})
    assert r.status_code == 200
    leaked = [rec for rec in caplog.records if "Wang Xiaoming" in rec.getMessage()]
    assert leaked == [], (
        f"{leaked[0].name}: {leaked[0].getMessage()[:80]!r} ({len(leaked[0].getMessage())} chars)"
    )


async def test_tracestate_split_over_two_header_lines_is_kept_whole(
    spans: InMemorySpanExporter, http: httpx.AsyncClient, seen: list[str | None]
) -> None:
    """FIXED (low). W3C Trace Context (and RFC 9110 section 5.3): several ``tracestate`` header
    lines are one comma-joined list, and the propagator accepts a list of lines. The server
    span's carrier is built as a dict over the header lines, so only the *last* line survives:
    ``tracestate: a=1`` + ``tracestate: b=2`` continues with ``b=2`` only, and the other vendor's
    entry is dropped from the stored context and every downstream Kafka header."""
    headers = [(b"traceparent", TRACEPARENT.encode()), (b"tracestate", b"a=1"), (b"tracestate", b"b=2")]
    r = await http.get("/things/1", headers=headers)
    assert r.status_code == 200
    members = set(_stored(seen).get("tracestate", "").split(","))
    assert members == {"a=1", "b=2"}, members


KNOWN_METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE", "_OTHER"}


def _method_labels() -> set[str]:
    return {
        s.labels["method"]
        for metric in REGISTRY.collect()
        if metric.name == "http_request_duration_seconds"
        for s in metric.samples
        if s.name.endswith("_count")
    }


async def test_a_hostile_method_mints_no_metrics_label_nor_span_name(
    spans: InMemorySpanExporter, http: httpx.AsyncClient
) -> None:
    """FIXED (low: bounded by the shipped server). ``MetricsMiddleware`` labels by the raw
    ``scope["method"]`` and ``TracingMiddleware`` names the span and sets ``http.request.method``
    from it. Every method a server lets through becomes a new time series (times every route,
    each answering 405) and a new span name. uvicorn with httptools (pinned) refuses unknown
    methods with 400 but passes llhttp's ~34 (PROPFIND, MKCOL, QUERY, ...); with ``--http h11``
    or another ASGI server any token passes (checked: ``RANDOM111 /healthz`` under h11 became
    a label). OpenTelemetry's HTTP conventions say ``_OTHER`` for a method outside the known set;
    the same for the label bounds its cardinality."""
    hostile = [f"X{uuid.uuid4().hex[:12].upper()}" for _ in range(3)]
    for method in hostile:
        assert (await http.request(method, "/things/1")).status_code == 405
    labels = _method_labels()
    assert not (labels - KNOWN_METHODS), f"unbounded method labels: {sorted(labels - KNOWN_METHODS)}"
    names = {s.name.split(" ", 1)[0] for s in spans.get_finished_spans()}
    assert names <= KNOWN_METHODS, names


def test_the_debezium_form_carries_the_events_trace_context() -> None:
    """FIXED. docs/DESIGN.md (Kafka headers) and README promise the ``traceparent``/``tracestate``
    headers while tracing is on, and the events table stores them (``trace_context``). With
    change data capture (``UNION_RELAY_ENABLED=false``: Debezium publishes) the connector
    configuration we ship (deploy/k8s/cdc/connectors.yaml) places no trace column, so every
    trace stops at the outbox: the consumer starts a new trace for each event. (Debezium's
    outbox router cannot unpack a JSON column into two headers; a generated column per header,
    or its ``tracingspancontext`` support, would be needed.)"""
    row = {
        "position": 1,
        "event_id": uuid.uuid4(),
        "stream_type": "Member",
        "stream_id": str(uuid.uuid4()),
        "version": 1,
        "event_type": "MemberEnrolled",
        "schema_version": 1,
        "occurred_at": datetime(2026, 3, 1, tzinfo=UTC),
        "correlation_id": uuid.uuid4(),
        "causation_id": None,
        "data": {},
        "trace_context": {"traceparent": TRACEPARENT, "tracestate": "a=1"},
    }
    _, _, _, headers = debezium_record(row)
    assert dict(headers).get("traceparent") == TRACEPARENT.encode(), [k for k, _ in headers]


# --- an unreachable collector -----------------------------------------------------------------


@pytest.fixture
def blackhole() -> Iterator[int]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers (a hung collector)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(server.getsockname()[1])
    stop.set()
    thread.join(timeout=5)
    for conn in held:
        conn.close()
    server.close()


async def test_requests_do_not_slow_down_while_the_collector_hangs(
    blackhole: int, seen: list[str | None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """HOLDS. The real OTLP exporter pointed at a collector that accepts and never answers,
    exporting every 50 ms (so exports hang throughout): 400 requests all answer 200, and their
    median stays within 1 ms of the same requests with tracing off (the batch processor exports
    on its own thread; a full queue drops spans, never blocks)."""
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{blackhole}",
        "OTEL_EXPORTER_OTLP_TIMEOUT": "2",
        "OTEL_BSP_SCHEDULE_DELAY": "50",
        "OTEL_BSP_MAX_QUEUE_SIZE": "64",
        "OTEL_BSP_MAX_EXPORT_BATCH_SIZE": "32",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)

    async def timings() -> list[float]:
        transport = httpx.ASGITransport(app=_app(seen))
        out = []
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            for _ in range(400):
                started = time.perf_counter()
                r = await client.get("/things/1", headers={"traceparent": TRACEPARENT})
                out.append(time.perf_counter() - started)
                assert r.status_code == 200
        return out

    off = statistics.median(await timings())
    assert tracing.configure_tracing("claims", env) is True
    provider = tracing._state.provider
    try:
        on = statistics.median(await timings())
    finally:
        tracing.install(None)
        if provider is not None:
            threading.Thread(target=provider.shutdown, daemon=True).start()  # may hang: not awaited
    assert on < off + 0.001, f"median {on * 1e3:.2f} ms with a hung collector vs {off * 1e3:.2f} ms off"


EXITING = """
import os, sys, uuid
os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"] = sys.argv[1]
from shared import tracing
assert tracing.configure_tracing("claims")
for _ in range(100):
    with tracing.consumer_span("InjuryReported", uuid.uuid4(), "claims", None):
        pass
"""


def test_a_service_with_a_hung_collector_still_exits_promptly(blackhole: int) -> None:
    """FIXED. A process that traced and then ends (after uvicorn's drain and the runtime's stop)
    waits in the SDK's atexit shutdown for the exporter: here 10.5-11.2 s for 100 spans, and
    20.8 s for 1000 (two batches), with a collector that accepts and never answers; 14.4 s with
    one that refuses connections (the exporter's 10 s timeout per batch, retries with backoff).
    ``ServiceRuntime.stop`` never shuts the provider down with a bound of its own, and
    deploy/local/services.sh SIGKILLs a service 15 s after TERM: with the collector down a busy
    service's stop ends in SIGKILL, and in Kubernetes the flush takes up to 20 s of the 60 s grace
    period on top of the 15 s drain. Expected: spans still buffered get a short, bounded flush
    (a few seconds), then are dropped."""
    script = EXITING
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-c", script, f"http://127.0.0.1:{blackhole}"],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        capture_output=True,
        timeout=90,
    )
    took = time.monotonic() - started
    assert proc.returncode == 0, proc.stderr.decode()[-2000:]
    assert took < 8, f"exit took {took:.1f} s with a hung collector"
