"""Issue 16, item 5: after an unexpected exception the client gets a 500 problem+json on a
connection that stays open, and the log says the type only (no traceback, no values).

A real uvicorn on a free port: only a real server shows whether the connection survives (Starlette
re-raised to uvicorn, which logged the traceback and closed the socket)."""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
import uvicorn

from services.claims.app import ClaimsSettings, build_runtime
from tests.kafka_broker import free_port

SECRET = "110113198005200017"


@pytest.fixture
def server(caplog: pytest.LogCaptureFixture) -> Iterator[int]:
    app = build_runtime(ClaimsSettings()).http_app([], title="edge under test")

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError(f"duplicate key value (national_id)=({SECRET})")

    @app.get("/away")
    async def away() -> None:
        raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")

    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="off", log_level="info"))
    thread = threading.Thread(target=srv.run, daemon=True)
    caplog.set_level(logging.INFO)
    thread.start()
    deadline = time.monotonic() + 10
    while not srv.started and time.monotonic() < deadline:
        time.sleep(0.05)
    try:
        yield port
    finally:
        srv.should_exit = True
        thread.join(timeout=10)


def _read_response(sock: socket.socket) -> tuple[str, dict[str, str], bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, "connection closed before an answer"
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    status, *lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    length = int(headers["content-length"])
    while len(rest) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-answer"
        rest += chunk
    return status, headers, rest[:length]


def test_unexpected_error_is_500_problem_on_a_kept_connection(
    server: int, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        for _ in range(2):  # the second request proves the connection was kept
            sock.sendall(b"GET /boom HTTP/1.1\r\nHost: test\r\n\r\n")
            status, headers, body = _read_response(sock)
            assert status.startswith("HTTP/1.1 500")
            assert headers["content-type"].startswith("application/problem+json")
            assert json.loads(body)["status"] == 500
            assert SECRET not in body.decode()
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        assert _read_response(sock)[0].startswith("HTTP/1.1 200")
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "unhandled RuntimeError on GET /boom" in logged
    assert SECRET not in logged and "Traceback" not in logged
    assert not any(r.exc_info for r in caplog.records)


def test_a_backing_service_away_is_503_with_retry_after(server: int) -> None:
    with socket.create_connection(("127.0.0.1", server), timeout=5) as sock:
        sock.sendall(b"GET /away HTTP/1.1\r\nHost: test\r\n\r\n")
        status, headers, body = _read_response(sock)
    assert status.startswith("HTTP/1.1 503") and headers["retry-after"] == "1"
    assert json.loads(body)["code"] == "temporarily_unavailable"
