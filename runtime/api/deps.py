"""What every router depends on: the caller's identity and the service's shared objects.

The objects live on ``app.state`` (set once by ``create_app``); these dependencies hand them to the
routes. Plain lookups are ``async`` so FastAPI runs them on the event loop instead of a thread hop.
"""

from __future__ import annotations

import uuid as uuidlib
from typing import Annotated, Any

from fastapi import Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from runtime.api.errors import Unauthorized
from runtime.api.schemas import ErrorBody
from runtime.errors import NotFoundError
from runtime.jobs.queue import JobQueue
from runtime.tokens import TokenStore
from runtime.wiring import Services

API = "/api/v1"
bearer = HTTPBearer(auto_error=False, description="A token from `hubctl token create`.")


async def _services(request: Request) -> Services:
    return request.app.state.services


async def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The authenticated caller's actor name (``api:<token name>``), or 401."""
    store: TokenStore = request.app.state.tokens
    name = store.verify(credentials.credentials) if credentials is not None else None
    if name is None:
        raise Unauthorized("missing, unknown or revoked bearer token")
    return f"api:{name}"


Caller = Annotated[str, Depends(caller)]
ServicesDep = Annotated[Services, Depends(_services)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 422: {"model": ErrorBody}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {**ERRORS, 404: {"model": ErrorBody}}


def accepted(
    queue: JobQueue, response: Response, kind: str, params: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Queue the job (audited with it) and answer 202 with it and where to follow it."""
    job = queue.submit(kind, params, actor=actor)
    response.headers["Location"] = f"{API}/jobs/{job['id']}"
    return job


def canonical_uuid(value: str, *, what: str) -> str:
    """A path's uuid in canonical form; anything else names nothing, so 404."""
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise NotFoundError(f"no {what} {value!r}") from None
