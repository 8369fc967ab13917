"""The FastAPI application: the system routes, every domain's router, auth, error mapping, limits.

Routers are one per noun: the core ones (jobs, audit) and each domain's (``runtime.domains``).
Shared objects live on ``app.state`` and reach routes through ``runtime.api.deps``.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime import domains
from runtime.api import audit, errors, jobs
from runtime.api.deps import API, ERRORS, Caller
from runtime.api.limits import BodyLimit
from runtime.api.schemas import HealthDocument
from runtime.jobs.queue import JobQueue
from runtime.metrics import Metrics
from runtime.tokens import TokenStore
from runtime.wiring import Services

MAX_BODY_BYTES = 64 * 1024

# Sync handlers (database work) run in anyio's thread pool, 40 threads by default. Under load, 40
# threads fighting over the GIL and the database pool serve fewer requests than a handful do, and
# past saturation that collapse feeds on itself. A small pool keeps the excess queued on the event
# loop, where waiting is cheap.
API_THREADS = 6


@asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncGenerator[None, None]:
    anyio.to_thread.current_default_thread_limiter().total_tokens = API_THREADS
    yield


def create_app(*, services: Services, queue: JobQueue, metrics: Metrics) -> FastAPI:
    app = FastAPI(
        title="Hub API",
        version="1",
        summary="Checkpoints, jobs, health and audit of the Hub.",
        lifespan=_lifespan,
    )
    app.state.services = services
    app.state.queue = queue
    app.state.tokens = TokenStore(services.ready_db())
    app.state.metrics = metrics
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)

    @app.get("/healthz", tags=["system"], summary="Liveness: the process answers (no auth).")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(f"{API}/health", tags=["system"], response_model=HealthDocument, responses=ERRORS)
    def health(_: Caller) -> dict[str, Any]:
        return metrics.latest_health(services)

    @app.get("/metrics", tags=["system"], responses=ERRORS, response_class=Response)
    def prometheus(_: Caller) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in (*domains.routers(), jobs.router, audit.router):
        app.include_router(router)
    return app
