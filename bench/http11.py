"""A minimal keep-alive HTTP/1.1 client for the load generator's hot path.

On a 2-core machine the load generator shares the cores with what it measures: httpx spent about
5 ms of CPU per injury report (as much as the membership service answering it), so a quarter of
the machine went to the benchmark itself. This client does only what the benchmark needs (JSON
POST, ``Content-Length`` bodies, persistent connections) at a fraction of that; the setup phase,
which is not timed, still uses httpx.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from urllib.parse import urlsplit


class HttpError(Exception):
    """The server answered in a way this client does not speak (chunked, closed early)."""


class Http11Pool:
    """Connections to one ``http://host:port``, reused; one request at a time per connection."""

    def __init__(self, base_url: str, headers: dict[str, str]) -> None:
        url = urlsplit(base_url)
        if url.scheme != "http" or not url.hostname:
            raise ValueError(f"only http://host:port is supported, not {base_url!r}")
        self.host, self.port = url.hostname, url.port or 80
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        self._idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []

    #: uvicorn closes a connection idle for 5 s; one idle for 2 s is dropped here first, so a
    #: request never races the server's close on a reused connection.
    IDLE_EXPIRY = 2.0

    async def post_json(self, path: str, body: Any) -> tuple[int, Any]:
        """POST ``body`` as JSON; (status, decoded JSON body or None)."""
        payload = json.dumps(body, separators=(",", ":")).encode()
        head = (
            f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self._fixed}"
            f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n"
        ).encode()
        reader, writer = await self._connection()
        try:
            writer.write(head + payload)
            status, length, close = await self._read_head(reader)
            data = await reader.readexactly(length) if length else b""
        except BaseException:
            writer.close()
            raise
        if close:
            writer.close()
        else:
            self._idle.append((reader, writer, time.monotonic()))
        return status, json.loads(data) if data else None

    async def _connection(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        while self._idle:
            reader, writer, since = self._idle.pop()
            if time.monotonic() - since < self.IDLE_EXPIRY:
                return reader, writer
            writer.close()
        return await asyncio.open_connection(self.host, self.port)

    @staticmethod
    async def _read_head(reader: asyncio.StreamReader) -> tuple[int, int, bool]:
        raw = await reader.readuntil(b"\r\n\r\n")
        lines = raw.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        length, close = 0, False
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                length = int(value)
            elif name == "transfer-encoding":
                raise HttpError("chunked answers are not supported")
            elif name == "connection" and value.strip().lower() == "close":
                close = True
        return status, length, close

    async def close(self) -> None:
        while self._idle:
            _, writer, _ = self._idle.pop()
            writer.close()
