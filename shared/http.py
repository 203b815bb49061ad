"""RFC 9457 problem+json errors: every failure a client can cause gets a 4xx naming the field."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from shared.aggregate import DomainError
from shared.eventstore import ConcurrencyError, EventTooLarge

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


class ProblemError(Exception):
    def __init__(
        self,
        status: int,
        title: str,
        detail: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail = status, title, detail
        self.errors, self.headers, self.code = errors, headers, code


def problem(
    status: int,
    title: str,
    detail: str,
    *,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
    code: str | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://union.example/problems/{code or status}",
        "title": title,
        "status": status,
        "detail": _bounded(detail),
    }
    if code:
        body["code"] = code
    if errors:
        body["errors"] = [
            {k: _bounded(v) if isinstance(v, str) else v for k, v in e.items()} for e in errors[:MAX_ERRORS]
        ]
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


#: An error answer never echoes more than this much of anything the client sent.
MAX_ECHO = 200
MAX_ERRORS = 20


def _bounded(text: str) -> str:
    return text if len(text) <= MAX_ECHO else text[: MAX_ECHO - 1] + "…"


_TITLES = {404: "Not Found", 409: "Conflict", 413: "Content Too Large", 422: "Unprocessable Content"}


def install_problem_handlers(app: FastAPI) -> None:
    @app.exception_handler(ProblemError)
    async def _problem(_: Request, exc: ProblemError) -> JSONResponse:
        return problem(
            exc.status, exc.title, exc.detail, errors=exc.errors, headers=exc.headers, code=exc.code
        )

    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        errors = [{"field": exc.field, "message": exc.message}] if exc.field else None
        return problem(
            exc.status, _TITLES.get(exc.status, "Error"), exc.message, errors=errors, code=exc.code
        )

    @app.exception_handler(ConcurrencyError)
    async def _concurrency(_: Request, exc: ConcurrencyError) -> JSONResponse:
        # The command was retried from fresh reads and still lost the race: let the client retry.
        return problem(
            409,
            "Conflict",
            "the record changed while this request ran; try again",
            code="concurrent_update",
        )

    @app.exception_handler(EventTooLarge)
    async def _too_large(_: Request, exc: EventTooLarge) -> JSONResponse:
        # Kafka refuses messages over its max.message.bytes: an event that big must never be
        # stored, or it would sit at the head of the outbox for ever.
        return problem(
            413,
            "Content Too Large",
            f"the change is too large to record ({exc.size} bytes of event data, max {exc.limit})",
            errors=[{"field": exc.field, "message": f"too large: an event may hold {exc.limit} bytes"}],
            code="event_too_large",
        )

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {
                # ("body", "shares") -> "shares"; query/path parameters keep their name.
                "field": ".".join(str(p) for p in err["loc"][1:]) or str(err["loc"][0]),
                "location": str(err["loc"][0]),
                "message": err["msg"],
                "type": err["type"],
                # Never ``input``: it would echo whatever was sent, however large.
            }
            for err in exc.errors()
        ]
        fields = ", ".join(e["field"] for e in errors)
        return problem(
            422,
            "Unprocessable Content",
            f"invalid input: {fields}",
            errors=errors,
            code="validation_error",
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            from shared.edge import allowed_methods  # edge imports this module

            headers["Allow"] = allowed_methods(request.scope)
        return problem(exc.status_code, str(exc.detail), str(exc.detail), headers=headers or None)

    # Unexpected exceptions are answered by shared.edge.EdgeMiddleware (500 problem+json, type-only
    # log line, connection kept), not by a handler here: Starlette re-raises from those to uvicorn.
