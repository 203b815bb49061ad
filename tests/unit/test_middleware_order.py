"""The order of the HTTP layers (shared/runtime.py ``http_app``), found wrong by review:

1. answers made by the edge (401, 413, 422 refusals; the 500 and 503 for an exception) lacked the
   ``X-Correlation-ID`` header and the 500's log line its correlation id, because the correlation
   layer sat inside the edge: it is now the outermost layer;
2. the metrics layer, inside the edge too, recorded 500 for a transient error the client got as
   503, and never saw the edge's refusals: it now sits outside the edge and records the status
   the client received.

In-process through httpx's ASGI transport; no lifespan, so no database or broker is needed (the
routes used here never reach one)."""

from __future__ import annotations

import io
import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from services.claims.app import ClaimsSettings, build_runtime
from shared.logs import JsonFormatter

STAFF = {"Authorization": "Bearer local-staff-token"}


@pytest.fixture
async def app() -> AsyncIterator[FastAPI]:
    settings = ClaimsSettings(max_body_bytes=1024)
    app = build_runtime(settings).http_app([], title="layers under test")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("a bug")

    @app.get("/away")
    async def away() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    @app.post("/v1/echo")
    async def echo(body: dict[str, str]) -> dict[str, str]:
        return body

    yield app


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://layers") as client:
        yield client


@pytest.fixture
def edge_log() -> Iterator[io.StringIO]:
    """The edge's log lines as JSON, formatted when written (so the context of the moment counts)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter("claims"))
    logger = logging.getLogger("shared.edge")
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.INFO)
    yield stream
    logger.removeHandler(handler)
    logger.setLevel(old)


def _count(method: str, route: str, status: int) -> float:
    value = REGISTRY.get_sample_value(
        "http_request_duration_seconds_count", {"method": method, "route": route, "status": str(status)}
    )
    return value or 0.0


@pytest.mark.parametrize(
    ("method", "path", "headers", "content", "status"),
    [
        ("GET", "/v1/anything", {}, None, 401),  # the edge authenticates /v1 before any route
        ("POST", "/v1/echo", STAFF, b'{"a": "' + b"x" * 2000 + b'"}', 413),  # body over the cap
        ("POST", "/v1/echo", STAFF, b'{"a": "1", "a": "2"}', 422),  # a duplicate key
        ("GET", "/boom", {}, None, 500),  # an exception the edge answers
        ("GET", "/away", {}, None, 503),  # a transient one
    ],
    ids=["401-auth", "413-body", "422-duplicate-key", "500", "503"],
)
async def test_every_edge_answer_echoes_the_correlation_id(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    headers: dict[str, str],
    content: bytes | None,
    status: int,
) -> None:
    cid = str(uuid.uuid4())
    sent = {**headers, "X-Correlation-ID": cid, "Content-Type": "application/json"}
    r = await http.request(method, path, headers=sent, content=content)
    assert r.status_code == status
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.headers["x-correlation-id"] == cid


async def test_an_edge_answer_without_an_id_gets_a_fresh_one(http: httpx.AsyncClient) -> None:
    r = await http.get("/v1/anything")
    assert r.status_code == 401
    assert uuid.UUID(r.headers["x-correlation-id"])


async def test_the_500_log_line_names_the_requests_correlation_id(
    http: httpx.AsyncClient, edge_log: io.StringIO
) -> None:
    cid = str(uuid.uuid4())
    r = await http.get("/boom", headers={"X-Correlation-ID": cid})
    assert r.status_code == 500
    [line] = [json.loads(x) for x in edge_log.getvalue().splitlines() if "unhandled" in x]
    assert line["correlation_id"] == cid
    assert line["message"] == "unhandled RuntimeError on GET /boom"


async def test_metrics_record_the_status_the_client_got(http: httpx.AsyncClient) -> None:
    before = {s: _count("GET", "/away", s) for s in (500, 503)}
    r = await http.get("/away")
    assert r.status_code == 503
    assert _count("GET", "/away", 503) == before[503] + 1
    assert _count("GET", "/away", 500) == before[500], "a 503 must not be counted as a 500"

    before_500 = _count("GET", "/boom", 500)
    assert (await http.get("/boom")).status_code == 500
    assert _count("GET", "/boom", 500) == before_500 + 1


async def test_edge_refusals_are_counted(http: httpx.AsyncClient) -> None:
    # Refused before routing: under route "unmatched", told apart from a 404 by the status.
    before = {(m, s): _count(m, "unmatched", s) for m, s in (("GET", 401), ("POST", 413), ("POST", 422))}
    assert (await http.get("/v1/anything")).status_code == 401
    big = b'{"a": "' + b"x" * 2000 + b'"}'
    assert (await http.post("/v1/echo", headers=STAFF, content=big)).status_code == 413
    dup = b'{"a": "1", "a": "2"}'
    assert (await http.post("/v1/echo", headers=STAFF, content=dup)).status_code == 422
    assert _count("GET", "unmatched", 401) == before[("GET", 401)] + 1
    assert _count("POST", "unmatched", 413) == before[("POST", 413)] + 1
    assert _count("POST", "unmatched", 422) == before[("POST", 422)] + 1


async def test_a_routed_answer_keeps_its_route_template(http: httpx.AsyncClient) -> None:
    before = _count("POST", "/v1/echo", 200)
    r = await http.post("/v1/echo", headers=STAFF, json={"a": "b"})
    assert r.status_code == 200 and r.json() == {"a": "b"}
    assert _count("POST", "/v1/echo", 200) == before + 1
