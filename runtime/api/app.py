"""The FastAPI application: routes, auth, error mapping, limits. State lives on ``app.state``."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

import anyio.to_thread
from fastapi import Depends, FastAPI, Query, Request, Response, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime import audit
from runtime.api import errors
from runtime.api.limits import BodyLimit
from runtime.api.schemas import (
    AuditPage,
    CheckpointCreate,
    CheckpointPage,
    CheckpointPublic,
    ErrorBody,
    HealthDocument,
    JobPage,
    JobPublic,
    PruneRequest,
)
from runtime.api.tokens import TokenStore
from runtime.checkpoints.queries import CheckpointQueries
from runtime.db import CheckpointStatus, JobState
from runtime.jobs.queue import JobQueue
from runtime.metrics import Metrics
from runtime.wiring import Hub

MAX_BODY_BYTES = 64 * 1024
API = "/api/v1"
bearer = HTTPBearer(auto_error=False, description="A token from `hubctl token create`.")


# Plain lookups: async so FastAPI runs them on the event loop instead of a thread hop each.
async def _hub(request: Request) -> Hub:
    return request.app.state.hub


async def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


# Sync handlers (database work) run in anyio's thread pool, 40 threads by default. Under load, 40
# threads fighting over the GIL and the database pool serve fewer requests than a handful do, and
# past saturation that collapse feeds on itself. A small pool keeps the excess queued on the event
# loop, where waiting is cheap.
API_THREADS = 6


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncGenerator[None, None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = API_THREADS
    yield


def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The authenticated caller's actor name (``api:<token name>``), or 401."""
    store: TokenStore = request.app.state.tokens
    name = store.verify(credentials.credentials) if credentials is not None else None
    if name is None:
        raise errors.Unauthorized("missing, unknown or revoked bearer token")
    return f"api:{name}"


Caller = Annotated[str, Depends(caller)]
HubDep = Annotated[Hub, Depends(_hub)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 422: {"model": ErrorBody}}


def create_app(*, hub: Hub, queue: JobQueue, metrics: Metrics) -> FastAPI:
    app = FastAPI(
        title="Hub API",
        version="1",
        summary="Checkpoints, jobs, health and audit of the Hub.",
        lifespan=_lifespan,
    )
    app.state.hub = hub
    app.state.queue = queue
    app.state.tokens = TokenStore(hub.ready_db())
    app.state.metrics = metrics
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.get("/healthz", tags=["system"], summary="Liveness: the process answers (no auth).")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(f"{API}/health", tags=["system"], response_model=HealthDocument, responses=ERRORS)
    def health(_: Caller) -> dict[str, Any]:
        return metrics.latest_health(hub)

    @app.get("/metrics", tags=["system"], responses=ERRORS, response_class=Response)
    def prometheus(_: Caller) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------ checkpoints

    @app.get(f"{API}/checkpoints", tags=["checkpoints"], response_model=CheckpointPage, responses=ERRORS)
    def list_checkpoints(
        _: Caller,
        hub: HubDep,
        limit: Limit = 50,
        offset: Offset = 0,
        status_: Annotated[
            Literal["creating", "completed", "failed", "deleted"] | None, Query(alias="status")
        ] = None,
        vmid: Annotated[int | None, Query(ge=100, le=999_999_999)] = None,
    ) -> dict[str, Any]:
        st = CheckpointStatus(status_) if status_ else None
        items, total = CheckpointQueries(hub.ready_db()).page(
            status=st, vmid=vmid, limit=limit, offset=offset
        )
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @app.get(
        f"{API}/checkpoints/{{uuid}}",
        tags=["checkpoints"],
        response_model=CheckpointPublic,
        responses={**ERRORS, 404: {"model": ErrorBody}},
    )
    def show_checkpoint(_: Caller, hub: HubDep, uuid: str) -> dict[str, Any]:
        return CheckpointQueries(hub.ready_db()).show(_canonical_uuid(uuid))

    @app.post(
        f"{API}/checkpoints",
        tags=["checkpoints"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobPublic,
        responses=ERRORS,
    )
    def create_checkpoint(
        actor: Caller, queue: QueueDep, body: CheckpointCreate, response: Response
    ) -> dict[str, Any]:
        return _accepted(queue, response, "checkpoint.create", body.model_dump(exclude_none=True), actor)

    @app.delete(
        f"{API}/checkpoints/{{uuid}}",
        tags=["checkpoints"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobPublic,
        responses={**ERRORS, 404: {"model": ErrorBody}},
    )
    def delete_checkpoint(
        actor: Caller, hub: HubDep, queue: QueueDep, uuid: str, response: Response
    ) -> dict[str, Any]:
        cp = CheckpointQueries(hub.ready_db()).show(_canonical_uuid(uuid))  # 404 now, not in the job
        return _accepted(queue, response, "checkpoint.delete", {"uuid": cp["uuid"]}, actor)

    @app.post(
        f"{API}/checkpoints/prune",
        tags=["checkpoints"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobPublic,
        responses=ERRORS,
    )
    def prune(actor: Caller, queue: QueueDep, body: PruneRequest, response: Response) -> dict[str, Any]:
        return _accepted(queue, response, "checkpoint.prune", body.model_dump(), actor)

    @app.post(
        f"{API}/reconcile",
        tags=["checkpoints"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobPublic,
        responses=ERRORS,
    )
    def reconcile(actor: Caller, queue: QueueDep, response: Response) -> dict[str, Any]:
        return _accepted(queue, response, "reconcile", {}, actor)

    # ------------------------------------------------------------------- jobs

    @app.get(f"{API}/jobs", tags=["jobs"], response_model=JobPage, responses=ERRORS)
    def list_jobs(
        _: Caller,
        queue: QueueDep,
        limit: Limit = 50,
        offset: Offset = 0,
        state: Annotated[Literal["queued", "running", "succeeded", "failed"] | None, Query()] = None,
    ) -> dict[str, Any]:
        items, total = queue.store.page(state=JobState(state) if state else None, limit=limit, offset=offset)
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    @app.get(
        f"{API}/jobs/{{job_id}}",
        tags=["jobs"],
        response_model=JobPublic,
        responses={**ERRORS, 404: {"model": ErrorBody}},
    )
    def show_job(_: Caller, queue: QueueDep, job_id: str) -> dict[str, Any]:
        return queue.store.get(_canonical_uuid(job_id, what="job id"))

    # ------------------------------------------------------------------ audit

    @app.get(f"{API}/audit", tags=["audit"], response_model=AuditPage, responses=ERRORS)
    def list_audit(
        _: Caller,
        hub: HubDep,
        limit: Limit = 50,
        offset: Offset = 0,
        target: Annotated[str | None, Query(max_length=256)] = None,
    ) -> dict[str, Any]:
        with hub.ready_db().session() as s:
            items, total = audit.page(s, target=target, limit=limit, offset=offset)
        return {"items": items, "total": total, "limit": limit, "offset": offset}

    return app


def _accepted(
    queue: JobQueue, response: Response, kind: str, params: dict[str, Any], actor: str
) -> dict[str, Any]:
    """Queue the job (audited by the queue) and answer 202 with it and where to follow it."""
    job = queue.submit(kind, params, actor=actor)
    response.headers["Location"] = f"{API}/jobs/{job['id']}"
    return job


def _canonical_uuid(value: str, *, what: str = "checkpoint uuid") -> str:
    import uuid as uuidlib

    from runtime.errors import NotFoundError

    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise NotFoundError(f"no {what} {value!r}") from None
