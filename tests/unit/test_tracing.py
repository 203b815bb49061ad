"""Tracing (shared/tracing.py), in-process: which variables switch it on, the server span of a
request, the consumer span of a reaction, and what reaches the outbox and the Kafka headers.

Off, nothing of it runs: no span is made (so none can be exported), no context is stored with an
event and the relay adds no header, *even when the caller sent a ``traceparent``*. Chosen over
passing the caller's context through untraced: off must cost nothing on the hot path, and a
value the client chose should not be written into the event store, and onto every downstream
topic, by a service that was not asked to trace."""

from __future__ import annotations

import io
import json
import logging
import os
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from services.claims.app import ClaimsSettings, build_runtime
from shared import tracing
from shared.logs import JsonFormatter
from shared.relay import relay_headers
from tests.unit.test_tracing_adversarial11 import blackhole  # noqa: F401 (a fixture)

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
PARENT_SPAN = "00f067aa0ba902b7"
TRACEPARENT = f"00-{TRACE_ID}-{PARENT_SPAN}-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on, every finished span kept in memory; off again afterwards."""
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
def seen() -> dict[str, str | None]:
    return {}


@pytest.fixture
async def http(seen: dict[str, str | None]) -> AsyncIterator[httpx.AsyncClient]:
    app: FastAPI = build_runtime(ClaimsSettings()).http_app([], title="tracing under test")
    log = logging.getLogger("test.tracing.handler")

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        # What EventStore.append would store with an event appended here.
        seen["trace_context"] = tracing.current_trace_context()
        log.warning("handling")
        return {"thing_id": thing_id}

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://tracing") as client:
        yield client


@pytest.fixture
def handler_log() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("claims"))
    logger = logging.getLogger("test.tracing.handler")
    logger.addHandler(handler)
    yield stream
    logger.removeHandler(handler)


# --- the switch --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "exporters"),
    [
        ({}, []),  # off by default (the SDK itself would default to otlp)
        ({"OTEL_SERVICE_NAME": "claims"}, []),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "console,otlp"}, ["console", "otlp"]),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, ["otlp"]),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, ["otlp"]),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_TRACES_EXPORTER": "otlp"}, []),
        ({"OTEL_SDK_DISABLED": "TRUE", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, []),
        ({"OTEL_SDK_DISABLED": "false", "OTEL_TRACES_EXPORTER": "otlp"}, ["otlp"]),
    ],
)
def test_which_variables_switch_tracing_on(env: dict[str, str], exporters: list[str]) -> None:
    assert tracing.wanted_exporters(env) == exporters


def test_unset_variables_leave_tracing_off() -> None:
    assert tracing.configure_tracing("claims", {}) is False
    assert not tracing.enabled()


def test_an_otlp_endpoint_switches_it_on_with_the_service_name() -> None:
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"}
    try:
        assert tracing.configure_tracing("claims", env) is True
        assert tracing.enabled()
        provider = tracing._state.provider
        assert provider is not None
        assert provider.resource.attributes["service.name"] == "claims"
    finally:
        provider = tracing._state.provider
        tracing.install(None)
        if provider is not None:
            provider.shutdown()  # no span was made: nothing is sent


# --- off ---------------------------------------------------------------------------------------


async def test_off_no_span_no_stored_context_no_header(
    http: httpx.AsyncClient, seen: dict[str, str | None], handler_log: io.StringIO
) -> None:
    exporter = InMemorySpanExporter()  # would receive spans if anything made one; nothing does
    assert not tracing.enabled()
    r = await http.get("/things/1", headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200
    assert seen["trace_context"] is None, "off: nothing is stored with an event"
    assert exporter.get_finished_spans() == ()
    [line] = [json.loads(x) for x in handler_log.getvalue().splitlines()]
    assert "trace_id" not in line
    with tracing.consumer_span("InjuryReported", uuid.uuid4(), "claims", {"traceparent": TRACEPARENT}):
        assert tracing.current_trace_context() is None
    names = [k for k, _ in relay_headers(_row(traceparent=None))]
    assert names == ["event_type", "event_id", "schema_version", "correlation_id"]


# --- on ----------------------------------------------------------------------------------------


async def test_a_request_continues_the_callers_trace(
    spans: InMemorySpanExporter,
    http: httpx.AsyncClient,
    seen: dict[str, str | None],
    handler_log: io.StringIO,
) -> None:
    r = await http.get("/things/42", headers={"traceparent": TRACEPARENT})
    assert r.status_code == 200
    [span] = spans.get_finished_spans()
    assert span.name == "GET /things/{thing_id}"  # the template, never the id
    assert span.kind is SpanKind.SERVER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_SPAN
    assert span.attributes is not None
    assert span.attributes["http.route"] == "/things/{thing_id}"
    assert span.attributes["http.response.status_code"] == 200
    # What an append in the handler stores: this very span's context.
    stored = json.loads(seen["trace_context"] or "{}")
    assert stored["traceparent"] == f"00-{TRACE_ID}-{span.context.span_id:016x}-01"
    [line] = [json.loads(x) for x in handler_log.getvalue().splitlines()]
    assert line["trace_id"] == TRACE_ID and line["span_id"] == f"{span.context.span_id:016x}"


async def test_a_request_without_traceparent_starts_a_trace(
    spans: InMemorySpanExporter, http: httpx.AsyncClient
) -> None:
    assert (await http.get("/things/1")).status_code == 200
    [span] = spans.get_finished_spans()
    assert span.parent is None and span.context.trace_id != 0


async def test_an_edge_500_is_an_error_span_without_the_message(
    spans: InMemorySpanExporter, http: httpx.AsyncClient
) -> None:
    assert (await http.get("/boom")).status_code == 500
    [span] = spans.get_finished_spans()
    assert span.name == "GET /boom"
    assert span.status.status_code is StatusCode.ERROR
    assert span.events == ()  # no exception event: its text could carry personal data


async def test_an_edge_refusal_is_in_the_trace(spans: InMemorySpanExporter, http: httpx.AsyncClient) -> None:
    assert (await http.get("/v1/anything", headers={"traceparent": TRACEPARENT})).status_code == 401
    [span] = spans.get_finished_spans()
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.attributes is not None and span.attributes["http.response.status_code"] == 401


def test_a_reaction_continues_the_events_trace(spans: InMemorySpanExporter) -> None:
    event_id = uuid.uuid4()
    with tracing.consumer_span("InjuryReported", event_id, "claims", {"traceparent": TRACEPARENT}):
        stored = json.loads(tracing.current_trace_context() or "{}")
    [span] = spans.get_finished_spans()
    assert span.name == "InjuryReported process" and span.kind is SpanKind.CONSUMER
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == PARENT_SPAN
    assert span.attributes is not None and span.attributes["messaging.message.id"] == str(event_id)
    assert tracing.trace_id_of(stored["traceparent"]) == TRACE_ID


def test_a_failing_reaction_marks_its_span(spans: InMemorySpanExporter) -> None:
    with (
        pytest.raises(LookupError),
        tracing.consumer_span("InjuryReported", uuid.uuid4(), "claims", None),
    ):
        raise LookupError("member 110113198005200017 unknown")
    [span] = spans.get_finished_spans()
    assert span.status.status_code is StatusCode.ERROR
    assert span.status.description == "LookupError"  # the type, not the message
    assert span.parent is None  # no header upstream: a trace of its own


def test_the_relay_sends_the_stored_context_as_headers() -> None:
    headers = dict(relay_headers(_row(traceparent=TRACEPARENT, tracestate="vendor=1")))
    assert headers["traceparent"] == TRACEPARENT.encode()
    assert headers["tracestate"] == b"vendor=1"
    assert tracing.carrier_from_headers(list(headers.items())) == {
        "traceparent": TRACEPARENT,
        "tracestate": "vendor=1",
    }
    assert tracing.carrier_from_headers([("event_type", b"X")]) is None


def _row(*, traceparent: str | None, tracestate: str | None = None) -> dict[str, object]:
    return {
        "event_type": "InjuryReported",
        "event_id": str(uuid.uuid4()),
        "schema_version": 1,
        "correlation_id": str(uuid.uuid4()),
        "traceparent": traceparent,
        "tracestate": tracestate,
    }


def test_spans_reach_an_otlp_collector_over_http() -> None:
    """The exporter the variables configure really sends OTLP/HTTP (to a stand-in collector on
    127.0.0.1 that records what it is sent)."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

    received: list[tuple[str, bytes]] = []

    class Collector(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((self.path, body))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Collector)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    env = {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_address[1]}"}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the OTLP exporter reads its endpoint from the environment itself
    try:
        assert tracing.configure_tracing("claims", env) is True
        with tracing.consumer_span("InjuryReported", uuid.uuid4(), "claims", {"traceparent": TRACEPARENT}):
            pass
        provider = tracing._state.provider
        assert provider is not None and provider.force_flush(10_000)
    finally:
        provider = tracing._state.provider
        tracing.install(None)
        if provider is not None:
            provider.shutdown()
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.shutdown()
        thread.join(timeout=5)
    [(path, body)] = received
    assert path == "/v1/traces"
    request = ExportTraceServiceRequest.FromString(body)
    [resource_spans] = request.resource_spans
    service = {a.key: a.value.string_value for a in resource_spans.resource.attributes}["service.name"]
    assert service == "claims"
    [span] = [s for scope in resource_spans.scope_spans for s in scope.spans]
    assert span.name == "InjuryReported process" and span.trace_id.hex() == TRACE_ID


# --- stopping with a hung collector ------------------------------------------------------------


async def test_the_runtimes_stop_bounds_the_flush_when_the_collector_hangs(
    blackhole: int,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """ServiceRuntime.stop shuts tracing down within tracing.SHUTDOWN_SECONDS (and says spans were
    dropped) instead of the exporter's 10 s per batch; a runtime stopping does not leave it on."""
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", f"http://127.0.0.1:{blackhole}")
    runtime = build_runtime(ClaimsSettings())
    assert tracing.configure_tracing("claims") is True
    for _ in range(100):
        with tracing.consumer_span("InjuryReported", uuid.uuid4(), "claims", None):
            pass
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="shared.tracing"):
        await runtime.stop()
    took = time.monotonic() - started
    assert took < tracing.SHUTDOWN_SECONDS + 1.5, f"stop took {took:.1f} s"
    assert not tracing.enabled()
    assert any("dropped" in r.getMessage() for r in caplog.records), caplog.text
