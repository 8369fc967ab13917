"""Errors to HTTP, in one place. Services raise typed errors and never know about HTTP.

Every error the API answers has one shape, ``{"error": <code>, "detail": <one sentence>}``: domain
errors (the table below), request validation (422), the framework's own refusals (unknown path,
wrong method, unreadable body) and, for a bug, a 500 that names no internals. Bodies are encoded
ASCII-only, so text a client sent (a lone surrogate in a JSON key, say) is escaped instead of failing
the encoder halfway through an error response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from hubcore.proxmox import ProxmoxError
from runtime.errors import (
    DatabaseError,
    HubError,
    LockBackendError,
    LockBusyError,
    NotFoundError,
    OperationError,
    UsageError,
)
from runtime.machines.errors import QuotaExceeded

log = logging.getLogger(__name__)


class Unauthorized(HubError):
    """No valid bearer token: 401, with the challenge header HTTP requires."""


# Most specific first: the first class an error is an instance of decides its status.
STATUS: list[tuple[type[HubError], int, str]] = [
    (Unauthorized, 401, "unauthorized"),
    (NotFoundError, 404, "not_found"),
    (UsageError, 422, "invalid"),
    (LockBusyError, 409, "busy"),
    (QuotaExceeded, 409, "quota_exceeded"),
    (LockBackendError, 503, "lock_backend_unavailable"),
    (DatabaseError, 503, "database_unavailable"),
    (ProxmoxError, 502, "proxmox_error"),
    (OperationError, 500, "operation_failed"),
    (HubError, 500, "error"),
]

# The framework's own refusals (Starlette's HTTPException), by status.
HTTP_CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "busy",
    413: "too_large",
    415: "unsupported_media_type",
    422: "invalid",
    429: "too_many_requests",
}

# A validation answer names at most this many problems, each location part at most this long: a
# 64 KiB key is the client's own, it need not come back whole.
MAX_PROBLEMS = 5
MAX_LOC_PART = 40


class ErrorResponse(JSONResponse):
    """``{"error", "detail"}`` as ASCII JSON: any string a client sent round-trips as an escape."""

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def error_response(
    status: int, code: str, detail: str, *, headers: dict[str, str] | None = None
) -> ErrorResponse:
    return ErrorResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


def status_for(exc: HubError) -> tuple[int, str]:
    for cls, status, code in STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "error"


def describe_validation(errors: Sequence[Any]) -> str:
    """pydantic's errors as one line, ``body.kind: Input should be ...``. The rejected input is left
    out on purpose: it is the client's own, may be large, and may not even be encodable."""
    parts: list[str] = []
    for error in errors[:MAX_PROBLEMS]:
        loc = ".".join(_short(str(p)) for p in error.get("loc", ()) if p != "body") or "body"
        parts.append(f"{loc}: {error.get('msg', 'invalid')}")
    if len(errors) > MAX_PROBLEMS:
        parts.append(f"and {len(errors) - MAX_PROBLEMS} more")
    return "; ".join(parts) or "invalid request"


def _short(part: str) -> str:
    return part if len(part) <= MAX_LOC_PART else part[:MAX_LOC_PART] + "..."


def install(app: FastAPI) -> None:
    async def hub_error(_request: Request, exc: Exception) -> ErrorResponse:
        assert isinstance(exc, HubError)
        status, code = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return error_response(status, code, str(exc), headers=headers)

    async def invalid(_request: Request, exc: Exception) -> ErrorResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(422, "invalid", describe_validation(exc.errors()))

    async def http_error(_request: Request, exc: Exception) -> ErrorResponse:
        assert isinstance(exc, HTTPException)
        code = HTTP_CODES.get(exc.status_code, f"http_{exc.status_code}")
        headers = dict(exc.headers) if exc.headers else None
        return error_response(exc.status_code, code, exc.detail, headers=headers)

    async def bug(request: Request, exc: Exception) -> ErrorResponse:
        # Starlette re-raises after this answer, so the server logs the traceback once; the client
        # learns only that it was not its fault.
        log.error("unexpected error answering %s %s: %r", request.method, request.url.path, exc)
        return error_response(500, "internal", "internal error; the service log has the details")

    app.add_exception_handler(HubError, hub_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, bug)
