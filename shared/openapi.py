"""Every service's OpenAPI document says what the edge really does: bearer tokens, and errors as
RFC 9457 ``application/problem+json`` (not FastAPI's default ``HTTPValidationError``), so client
generators and fuzzers can check error bodies too."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from shared.http import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "RFC 9457 problem details",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer", "minimum": 400, "maximum": 599},
        "detail": {"type": "string"},
        "code": {"type": "string", "description": "machine-readable reason, e.g. card_already_active"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string", "description": "the offending field or parameter"},
                    "location": {"type": "string"},
                    "message": {"type": "string"},
                    "type": {"type": "string"},
                },
            },
        },
    },
}

_ERRORS = {
    "400": "Malformed request (for example an unreadable body)",
    "401": "Missing or unknown bearer token",
    "403": "The token's role may not do this",
    "404": "Not found",
    "409": "Conflicts with the current state (see `code`)",
    "413": "Request body or resulting event too large",
    "422": "Invalid input; `errors` names each field",
    "503": "The database or broker is briefly unreachable; retry after `Retry-After` seconds",
}
_BODY_METHODS = {"post", "put", "patch", "delete"}


def document_security_and_problems(app: FastAPI, *, prefix: str = "/v1") -> None:
    """Replace ``app.openapi`` with one that adds the bearer scheme and the problem responses."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
        components = doc.setdefault("components", {})
        components.setdefault("securitySchemes", {})["bearer"] = {
            "type": "http",
            "scheme": "bearer",
            "description": "A token from UNION_API_TOKENS; each maps to a role",
        }
        schemas = components.setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        problem = {"content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}}}
        for path, operations in doc.get("paths", {}).items():
            if not path.startswith(prefix):
                continue
            for method, operation in operations.items():
                operation["security"] = [{"bearer": []}]
                responses = operation.setdefault("responses", {})
                for status, description in _ERRORS.items():
                    if status == "413" and method not in _BODY_METHODS:
                        continue
                    responses[status] = {"description": description, **problem}
        # FastAPI's default 422 shapes are replaced everywhere above.
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
