"""The edge every request passes first: what a hostile client must not get past, in one place.

In this order, before any route reads a byte of the body:

1. NUL (U+0000) in the query string -> 422 naming the parameter (PostgreSQL cannot store NUL in
   text, so it used to be a 500 wherever a route forgot to refuse it); in a path parameter, the
   app-wide dependency ``refuse_nul_in_path_params`` does the same once the route is known;
2. ``/v1`` calls are authenticated: anonymous ``{bad`` is a 401, not a 422 (roles stay with the
   routes, which check them before validating the body);
3. the body is capped at ``max_body_bytes`` while it streams (Content-Length first, then counted,
   so a chunked 15 MB body is never held in memory) -> 413;
4. a JSON body with a duplicate key (``{"national_id": "x", "national_id": "..."}`` used to mean
   "last wins") or a NUL in any string -> 422 naming the field;
5. any exception nothing else handled -> 500 problem+json on the same connection, logged by type
   and route template only (messages and tracebacks can carry personal data); a transient one
   (database or network away, the same classification the consumers use) -> 503 + Retry-After.
"""

from __future__ import annotations

import json
import logging
from typing import Any
from urllib.parse import parse_qsl

from fastapi import Request
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from shared.auth import TokenAuthority
from shared.http import ProblemError, problem
from shared.inbox import is_transient

log = logging.getLogger(__name__)

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKey(key)
        out[key] = value
    return out


def _nul_field(value: Any, path: str = "") -> str | None:
    """The dotted path of the first string (or key) holding a NUL, if any."""
    if isinstance(value, str):
        return path or "body" if "\x00" in value else None
    if isinstance(value, dict):
        for key, item in value.items():
            here = f"{path}.{key}" if path else key
            if "\x00" in key:
                return here
            found = _nul_field(item, here)
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = _nul_field(item, f"{path}.{i}" if path else str(i))
            if found:
                return found
    return None


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return True  # FastAPI parses a body without a content type as JSON
    media = content_type.split(";", 1)[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


def _invalid(field: str, location: str, message: str, code: str = "validation_error") -> ProblemError:
    return ProblemError(
        422,
        "Unprocessable Content",
        f"invalid input: {field}",
        errors=[{"field": field, "location": location, "message": message}],
        code=code,
    )


class BodyTooLarge(ProblemError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413,
            "Content Too Large",
            f"request bodies are limited to {limit} bytes",
            errors=[{"field": "body", "location": "body", "message": f"max {limit} bytes"}],
            code="body_too_large",
        )


class EdgeMiddleware:
    """Pure ASGI (not BaseHTTPMiddleware): it must see the body as it streams, and catch what
    would otherwise reach Starlette's ServerErrorMiddleware, which re-raises to uvicorn (full
    traceback in the log, connection closed)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, authenticated_prefix: str = "/v1") -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.prefix = authenticated_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            try:
                receive = await self._screen(scope, receive)
            except ProblemError as refused:
                await self._answer(scope, receive, tracking_send, refused)
                return
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            # Type and route template only: the message of a database error can quote the input.
            route = getattr(scope.get("route"), "path", None) or "(unrouted)"
            if is_transient(exc):
                # The database (or network) is away for a moment: nothing wrong with the request.
                log.warning("unavailable: %s on %s %s", type(exc).__name__, scope.get("method"), route)
                response = problem(
                    503,
                    "Service Unavailable",
                    "a backing service is briefly unreachable; try again",
                    headers={"Retry-After": "1"},
                    code="temporarily_unavailable",
                )
            else:
                log.error("unhandled %s on %s %s", type(exc).__name__, scope.get("method"), route)
                response = problem(500, "Internal Server Error", "unexpected error; see server logs")
            if not started:
                await response(scope, receive, send)

    async def _answer(self, scope: Scope, receive: Receive, send: Send, exc: ProblemError) -> None:
        response = problem(
            exc.status, exc.title, exc.detail, errors=exc.errors, headers=exc.headers, code=exc.code
        )
        await response(scope, receive, send)

    async def _screen(self, scope: Scope, receive: Receive) -> Receive:
        """Raise ProblemError to refuse; return the ``receive`` the app should read the body from."""
        path: str = scope.get("path", "")
        if "\x00" in path and not path.startswith(self.prefix + "/"):
            raise _invalid("path", "path", "must not contain NUL characters")
        # Under /v1 a NUL in the path is refused once routed, naming the parameter:
        # ``refuse_nul_in_path_params`` (an app-wide dependency).
        query = scope.get("query_string", b"").decode("latin-1")
        if "%00" in query or "\x00" in query:
            for name, value in parse_qsl(query, keep_blank_values=True):
                if "\x00" in name or "\x00" in value:
                    raise _invalid(name.replace("\x00", "") or "query", "query", "must not contain NUL")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        if path == self.prefix or path.startswith(self.prefix + "/"):
            app = scope.get("app")
            authority: TokenAuthority | None = getattr(getattr(app, "state", None), "auth", None)
            if authority is not None:
                authority.authenticate(headers.get("authorization"))
        if scope.get("method") not in _BODY_METHODS:
            return receive
        declared = headers.get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_body_bytes
            except ValueError:
                raise ProblemError(400, "Bad Request", "invalid Content-Length") from None
            if too_big:
                raise BodyTooLarge(self.max_body_bytes)
        body = await self._read_capped(receive)
        if body and _is_json(headers.get("content-type")):
            self._check_json(body)
        return _replay(body, receive)

    async def _read_capped(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ProblemError(400, "Bad Request", "client disconnected")
            chunk: bytes = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BodyTooLarge(self.max_body_bytes)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    def _check_json(self, body: bytes) -> None:
        try:
            parsed = json.loads(body, object_pairs_hook=_no_duplicates)
        except _DuplicateKey as dup:
            field = dup.key[:100].replace("\x00", "")
            raise _invalid(field, "body", "duplicate key in the JSON object", "duplicate_key") from None
        except (ValueError, RecursionError):
            return  # not JSON (or too deep): the route's own parser answers that, as before
        nul = _nul_field(parsed)
        if nul is not None:
            raise _invalid(nul[:200].replace("\x00", ""), "body", "must not contain NUL characters (U+0000)")


async def refuse_nul_in_path_params(request: Request) -> None:
    """App-wide dependency: a path parameter holding NUL is 422 naming it (``/plans/a%00b``)."""
    for name, value in request.path_params.items():
        if isinstance(value, str) and "\x00" in value:
            raise _invalid(name, "path", "must not contain NUL characters (U+0000)")


def allowed_methods(scope: Scope) -> str:
    """Every method some route serves at this path, for a 405's Allow header: FastAPI has one
    route per method, and the 405 of the first route matching the path listed only its own."""
    app = scope.get("app")
    routes = getattr(getattr(app, "router", None), "routes", [])
    allowed = {
        method
        for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")
        if any(route.matches({**scope, "method": method})[0] is Match.FULL for route in routes)
    }
    return ", ".join(sorted(allowed))


def _replay(body: bytes, receive: Receive) -> Receive:
    """Hand the already-read body to the app once, then pass through (for disconnects)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
