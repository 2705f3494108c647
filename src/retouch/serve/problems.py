"""Errors as RFC 9457 problem details (``application/problem+json``): type, title, status, detail, and
``field`` naming the request field at fault."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

logger = logging.getLogger(__name__)

MEDIA_TYPE = "application/problem+json"

TITLES = {
    400: ("bad-request", "Bad request"),
    401: ("unauthorized", "Missing or wrong token"),
    404: ("not-found", "Not found"),
    405: ("method-not-allowed", "Method not allowed"),
    408: ("timeout", "The request took too long"),
    409: ("conflict", "Not possible in this state"),
    413: ("too-large", "Request body too large"),
    415: ("unsupported-media-type", "Unsupported media type"),
    422: ("invalid-field", "A field is missing or wrong"),
    429: ("busy", "Too many requests at once"),
    500: ("internal", "Internal error"),
}


class Problem(Exception):
    """Raise anywhere in a request to answer it with a problem body."""

    def __init__(self, status: int, detail: str, field: str | None = None, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.detail, self.field, self.headers = status, detail, field, headers or {}


def problem_body(status: int, detail: str, field: str | None = None, instance: str | None = None) -> dict:
    slug, title = TITLES.get(status, ("error", "Error"))
    return {"type": f"urn:retouch:problem:{slug}", "title": title, "status": status, "detail": detail, "field": field, "instance": instance}


def problem_response(status: int, detail: str, field: str | None = None, instance: str | None = None, headers=None) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, field, instance), status_code=status, media_type=MEDIA_TYPE, headers=headers)


def field_of(loc: tuple | list) -> str | None:
    """A pydantic error location -> the request field: ("body", "strength") -> "strength"; ("edits", 2, "mask") -> "edits[2].mask"."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header", "cookie"):
        parts = parts[1:]  # where it came from, not the field
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out or None


def install(app: FastAPI) -> None:
    """Every error the app can answer, as a problem body."""

    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return problem_response(exc.status, exc.detail, exc.field, request.url.path, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        field = field_of(first.get("loc", ()))
        msg = first.get("msg", "invalid")
        if first.get("type") == "missing":
            detail = f"the field {field!r} is required"
        else:
            detail = f"{field}: {msg}" if field else msg
        if len(errors) > 1:
            detail += (
                f" (and {len(errors) - 1} more: " + "; ".join(f"{field_of(e.get('loc', ()))}: {e.get('msg')}" for e in errors[1:4]) + ")"
            )
        return problem_response(422, detail, field, request.url.path)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if exc.status_code == 404 and detail == "Not Found":
            detail = f"no route {request.method} {request.url.path} (see /docs)"
        return problem_response(exc.status_code, detail, None, request.url.path, getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        logger.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem_response(500, f"internal error ({type(exc).__name__}); the server log has the details", None, request.url.path)
