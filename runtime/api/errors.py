"""Domain errors to HTTP, in one place. Services raise typed errors and never know about HTTP."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

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


class Unauthorized(HubError):
    """No valid bearer token: 401, with the challenge header HTTP requires."""


# Most specific first: the first class an error is an instance of decides its status.
STATUS: list[tuple[type[HubError], int, str]] = [
    (Unauthorized, 401, "unauthorized"),
    (NotFoundError, 404, "not_found"),
    (UsageError, 422, "invalid"),
    (LockBusyError, 409, "busy"),
    (LockBackendError, 503, "lock_backend_unavailable"),
    (DatabaseError, 503, "database_unavailable"),
    (ProxmoxError, 502, "proxmox_error"),
    (OperationError, 500, "operation_failed"),
    (HubError, 500, "error"),
]


def status_for(exc: HubError) -> tuple[int, str]:
    for cls, status, code in STATUS:
        if isinstance(exc, cls):
            return status, code
    return 500, "error"


def install(app: FastAPI) -> None:
    async def handle(_request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HubError)
        status, code = status_for(exc)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        return JSONResponse({"error": code, "detail": str(exc)}, status_code=status, headers=headers)

    app.add_exception_handler(HubError, handle)
