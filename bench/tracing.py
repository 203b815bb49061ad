"""Per-request cost of the tracing layer, in-process (no database, no broker): the same route
through the whole HTTP stack with tracing off, then on (a batch span processor whose exporter
discards), interleaved, median of five rounds.

    .venv/bin/python -m bench.tracing [--requests 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import Sequence

import httpx
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

from services.claims.app import ClaimsSettings, build_runtime
from shared import tracing

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Discard(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


async def _round(client: httpx.AsyncClient, n: int) -> float:
    started = time.perf_counter()
    for _ in range(n):
        r = await client.get("/things/1", headers={"traceparent": TRACEPARENT})
        assert r.status_code == 200
    return (time.perf_counter() - started) / n * 1e6


async def main(requests: int) -> None:
    app = build_runtime(ClaimsSettings()).http_app([], title="tracing bench")

    @app.get("/things/{thing_id}")
    async def thing(thing_id: str) -> dict[str, str]:
        tracing.current_trace_context()  # what an append does
        return {"thing_id": thing_id}

    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Discard()))
    off: list[float] = []
    on: list[float] = []
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        await _round(client, requests // 4)  # warm up
        for _ in range(5):
            tracing.install(None)
            off.append(await _round(client, requests))
            tracing.install(provider)
            on.append(await _round(client, requests))
    tracing.install(None)
    provider.shutdown()
    print(
        f"tracing off: {statistics.median(off):.0f} us/request; on: {statistics.median(on):.0f} us/request "
        f"(median of 5 x {requests}, httpx ASGI transport in-process)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    asyncio.run(main(parser.parse_args().requests))
