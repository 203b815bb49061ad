"""OpenTelemetry tracing: one trace from an HTTP request through the outbox and Kafka to the
reaction of another service, and on to what that reaction publishes.

How the context travels (W3C Trace Context, ``traceparent``/``tracestate``):

1. HTTP: ``TracingMiddleware`` continues the caller's ``traceparent`` (or starts a trace) with a
   server span named by the route template;
2. the outbox: ``EventStore.append`` stores the current span's context with each event
   (``events.trace_context``), because the relay publishes later, from another task;
3. Kafka: the relay sends the stored context as the ``traceparent`` (and ``tracestate``) header;
4. a consumer: ``consumer_span`` continues the header's context with a consumer span around the
   event's reaction, so the events the reaction appends carry the same trace id (step 2 again).

Off by default, and then nearly free: nothing of the SDK is imported, no span is made, no context
is stored and no header is added (``enabled()`` is one attribute read). It is switched on by the
standard variables (``wanted_exporters``): ``OTEL_TRACES_EXPORTER=otlp`` (or ``console``), or an
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``; ``OTEL_SDK_DISABLED=true``
or ``OTEL_TRACES_EXPORTER=none`` keep it off whatever else is set. The exporter (OTLP over
HTTP/protobuf) reads its own ``OTEL_EXPORTER_OTLP_*`` settings, the SDK its ``OTEL_SERVICE_NAME``,
``OTEL_RESOURCE_ATTRIBUTES``, ``OTEL_TRACES_SAMPLER[_ARG]`` and ``OTEL_BSP_*``.

PII: spans carry ids, route templates, event types and exception *types* only; never a path with
its values, a message, an exception's text or a payload (exceptions are not recorded on spans).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import threading
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer, get_current_span
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.types import ASGIApp, Message, Receive, Scope, Send

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)

#: Always W3C Trace Context, whatever ``OTEL_PROPAGATORS`` says: the Kafka header is part of the
#: event contract (docs/DESIGN.md), and every consumer must be able to read what any producer wrote.
PROPAGATOR = TraceContextTextMapPropagator()
TRACE_HEADERS = ("traceparent", "tracestate")

_TRACER_NAME = "union.services"

#: The methods of RFC 9110 (and PATCH, RFC 5789): any other becomes ``_OTHER`` in span names,
#: ``http.request.method`` and the metrics label (OpenTelemetry's HTTP conventions), so a client
#: cannot mint a new span name or time series per request.
KNOWN_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})

#: How long stopping waits for spans still buffered: a hung or unreachable collector would
#: otherwise hold the process in the SDK's shutdown for the exporter's timeout per batch
#: (10 s each, with retries), longer than the supervisor's grace period.
SHUTDOWN_SECONDS = 2.5


class _State:
    tracer: Tracer | None = None
    provider: TracerProvider | None = None
    #: The provider ``configure_tracing`` made: the only one ``shutdown`` stops (a test's own,
    #: installed with ``install``, is the test's to shut down).
    configured: TracerProvider | None = None


_state = _State()


def enabled() -> bool:
    return _state.tracer is not None


def wanted_exporters(env: Mapping[str, str] | None = None) -> list[str]:
    """The span exporters the environment asks for; empty: tracing stays off.

    Unlike the SDK's own default (``otlp`` when nothing is set), nothing set means off: a service
    without a collector must not try to send spans to localhost:4318 every five seconds."""
    env = os.environ if env is None else env
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = env.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if named:
        chosen = [n.strip() for n in named.split(",") if n.strip()]
        return [] if "none" in chosen else chosen
    if env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        return ["otlp"]
    return []


def configure_tracing(service: str, env: Mapping[str, str] | None = None) -> bool:
    """Switch tracing on if the environment asks for it (see the module docstring); True if on.

    ``env`` decides *whether* (tests pass their own); the OTLP exporter and the SDK read their
    own settings (endpoint, headers, sampler, batching) from the process environment. Once on it
    stays on for the process (a second runtime in the same process, as in tests, shares it)
    until ``shutdown`` (``ServiceRuntime.stop``, or at exit), which exports what is still
    buffered within a short bound.
    """
    if enabled():
        return True
    exporters = wanted_exporters(env)
    if not exporters:
        return False
    env = os.environ if env is None else env
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

    # OTEL_SERVICE_NAME (read by Resource.create) wins over the service's own name.
    attributes = {} if env.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service}
    # Not the SDK's own atexit hook (unbounded with a hung collector): ``shutdown`` is bounded.
    provider = TracerProvider(resource=Resource.create(attributes), shutdown_on_exit=False)
    for name in exporters:
        exporter: SpanExporter
        if name == "otlp":
            protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL")
            if protocol and protocol != "http/protobuf":
                log.warning("tracing: OTLP protocol %s is not installed; using http/protobuf", protocol)
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            exporter = OTLPSpanExporter()
        elif name == "console":
            exporter = ConsoleSpanExporter()  # stdout; the JSON log lines go to stderr
        else:
            log.warning("tracing: unknown OTEL_TRACES_EXPORTER %r ignored", name)
            continue
        provider.add_span_processor(BatchSpanProcessor(exporter))
    install(provider)
    _state.configured = provider
    atexit.register(shutdown)
    log.info("tracing on: exporting spans with %s", ", ".join(exporters))
    return True


def shutdown(timeout: float = SHUTDOWN_SECONDS) -> bool:
    """Switch tracing off and export what is still buffered, waiting at most ``timeout`` seconds;
    False (and a warning) if spans had to be dropped. The SDK's shutdown joins the exporter
    thread, which a hung collector holds for its own timeout: it runs in a daemon thread here,
    abandoned at the deadline (the process is stopping)."""
    provider = _state.configured
    if provider is None or provider is not _state.provider:
        return True
    install(None)
    _state.configured = None
    done = threading.Event()
    flushed: list[bool] = []

    def run() -> None:
        try:
            flushed.append(provider.force_flush(timeout_millis=int(timeout * 1000)))
            provider.shutdown()
        except Exception as exc:  # an exporter's failure must not fail the stop
            log.warning("tracing: shutdown failed (%s)", type(exc).__name__)
            flushed.append(False)
        finally:
            done.set()

    threading.Thread(target=run, name="tracing-shutdown", daemon=True).start()
    if done.wait(timeout) and all(flushed):
        return True
    log.warning("tracing: spans still buffered after %.1f s were dropped (collector unreachable?)", timeout)
    return False


def install(provider: TracerProvider | None) -> None:
    """Trace with ``provider`` from now on (None: tracing off). Tests install one with an
    in-memory exporter. Kept here, not as OpenTelemetry's global provider, which can be set only
    once per process."""
    if provider is not None:
        from shared.logs import silence_echoing_loggers

        silence_echoing_loggers()  # from now on the propagator parses what clients send
    _state.provider = provider
    _state.tracer = provider.get_tracer(_TRACER_NAME) if provider is not None else None


# --- the context as stored with an event and sent in Kafka headers ------------------------------


def current_carrier() -> dict[str, str] | None:
    """The current span's context (``{"traceparent": ..., "tracestate": ...}``), or None when
    tracing is off or no span is active."""
    if _state.tracer is None:
        return None
    carrier: dict[str, str] = {}
    PROPAGATOR.inject(carrier)
    return carrier or None


def current_trace_context() -> str | None:
    """``current_carrier`` as the JSON text the outbox stores with an event."""
    carrier = current_carrier()
    return json.dumps(carrier, separators=(",", ":")) if carrier else None


def normalised(carrier: Mapping[str, str] | None) -> dict[str, str] | None:
    """``carrier`` as the W3C propagator reads it, written again: a valid ``traceparent`` and a
    valid, bounded ``tracestate`` (at most 512 + 8192 characters), or None if no valid context.

    What a producer or client put in the headers is never kept as it came: it may hold a NUL
    (which jsonb refuses), any amount of text, or bytes no trace system would read."""
    if not carrier:
        return None
    context = PROPAGATOR.extract(carrier)
    if not get_current_span(context).get_span_context().is_valid:
        return None
    out: dict[str, str] = {}
    PROPAGATOR.inject(out, context=context)
    return out or None


def carrier_from_lines(lines: Any) -> dict[str, str]:
    """``traceparent``/``tracestate`` of header lines ``(name, value)``, names in any case; a
    header sent on several lines is one comma-joined list (RFC 9110 section 5.3, W3C Trace
    Context), which also makes a repeated ``traceparent`` invalid, as the W3C tests expect."""
    found: dict[str, list[str]] = {}
    for key, value in lines or ():
        name = (key.decode("latin-1") if isinstance(key, bytes) else str(key)).lower()
        if name in TRACE_HEADERS and value is not None:
            found.setdefault(name, []).append(
                value.decode("latin-1") if isinstance(value, bytes) else str(value)
            )
    return {name: ",".join(values) for name, values in found.items()}


def carrier_from_headers(headers: Any) -> dict[str, str] | None:
    """The trace context of a Kafka record's headers, ``normalised`` (None if none is valid)."""
    return normalised(carrier_from_lines(headers))


def headers_of(carrier: Mapping[str, str] | None) -> list[tuple[str, bytes]]:
    """Kafka headers carrying ``carrier``, in the order of ``TRACE_HEADERS``."""
    if not carrier:
        return []
    return [(k, carrier[k].encode("latin-1")) for k in TRACE_HEADERS if carrier.get(k)]


def trace_id_of(traceparent: str | bytes) -> str:
    """The 32 hex digits of a ``traceparent`` (``00-<trace id>-<span id>-<flags>``)."""
    text = traceparent.decode("latin-1") if isinstance(traceparent, bytes) else traceparent
    return text.split("-")[1]


# --- spans ------------------------------------------------------------------------------------


@contextlib.contextmanager
def consumer_span(
    event_type: str, event_id: object, consumer: str, carrier: Mapping[str, str] | None
) -> Iterator[None]:
    """Around one event's reaction: a consumer span continuing the producer's trace (from the
    record's headers), current while the reaction runs, so what it appends carries the trace."""
    tracer = _state.tracer
    if tracer is None:
        yield
        return
    parent = PROPAGATOR.extract(carrier) if carrier else otel_context.Context()
    with tracer.start_as_current_span(
        f"{event_type} process",
        context=parent,
        kind=SpanKind.CONSUMER,
        attributes={
            "messaging.system": "kafka",
            "messaging.operation.type": "process",
            "messaging.message.id": str(event_id),
            "union.consumer": consumer,
            "union.event_type": event_type,
        },
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


@contextlib.contextmanager
def continued(name: str, carrier: Mapping[str, str] | None, **attributes: str) -> Iterator[None]:
    """Work done later on behalf of an earlier span (``carrier``, kept with the work): a span
    continuing that span's trace. Claims decides a report that waited for the member's facts in
    one, so its claims join the report's trace, not the trace of the fact that completed it."""
    tracer = _state.tracer
    if tracer is None or not carrier:
        yield
        return
    with tracer.start_as_current_span(
        name,
        context=PROPAGATOR.extract(carrier),
        kind=SpanKind.INTERNAL,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except Exception as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


class TracingMiddleware:
    """A server span per HTTP request, continuing the caller's ``traceparent``; named
    ``METHOD /route/{template}`` once the router has matched (never the raw path: it holds ids).
    Pure ASGI like the other layers; a pass-through when tracing is off."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        tracer = _state.tracer
        if tracer is None or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        carrier = carrier_from_lines(scope.get("headers", ()))
        method = method_of(scope)
        status = 0

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        with tracer.start_as_current_span(
            method,
            context=PROPAGATOR.extract(carrier) if carrier else otel_context.Context(),
            kind=SpanKind.SERVER,
            attributes={"http.request.method": method},
            record_exception=False,
            set_status_on_exception=False,
        ) as span:
            try:
                await self.app(scope, receive, recording_send)
            except Exception as exc:
                span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                _finish(span, scope, method, status)


def method_of(scope: Scope) -> str:
    """The request's method if it is a standard one, else ``_OTHER`` (for names and labels)."""
    method = str(scope.get("method", ""))
    return method if method in KNOWN_METHODS else "_OTHER"


def _finish(span: Span, scope: Scope, method: str, status: int) -> None:
    from shared.metrics import route_template  # metrics imports FastAPI and Kafka; only when on

    route = route_template(scope)
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    if status:
        span.set_attribute("http.response.status_code", status)
        if status >= 500:
            span.set_status(Status(StatusCode.ERROR))
