"""The FastAPI application: the system routes, every domain's router, auth, error mapping, limits.

Routers are one per noun: the core ones (jobs, audit), each domain's (``runtime.domains``) and the
status page. Shared objects live on ``app.state`` and reach routes through ``runtime.api.deps``.

The OpenAPI docs (``/docs``, Swagger UI) load their script and stylesheet from ``/static/swagger-ui``
(vendored from the npm package ``swagger-ui-dist``, Apache-2.0; see its LICENSE and NOTICE there),
never from a CDN, so they work on the Hub's isolated network. ReDoc is not served: its bundle would
be a second megabyte of vendored script for the same schema.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from runtime import domains
from runtime.api import audit, errors, jobs, status
from runtime.api.deps import API, ERRORS, Caller, VerifiedTokens
from runtime.api.limits import BodyLimit
from runtime.api.schemas import HealthDocument, Readiness
from runtime.jobs.queue import JobQueue
from runtime.logs import AccessLog
from runtime.metrics import Metrics
from runtime.tokens import TokenStore
from runtime.wiring import Services

MAX_BODY_BYTES = 64 * 1024
STATIC = Path(__file__).with_name("static")
SWAGGER = "/static/swagger-ui"

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
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
    )
    app.state.services = services
    app.state.queue = queue
    app.state.tokens = TokenStore(services.ready_db())
    app.state.verified_tokens = VerifiedTokens(app.state.tokens)
    app.state.metrics = metrics
    errors.install(app)
    app.add_middleware(BodyLimit, max_bytes=MAX_BODY_BYTES)
    app.add_middleware(AccessLog)  # outermost: it sees every request, refused ones included

    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="Hub API",
            swagger_js_url=f"{SWAGGER}/swagger-ui-bundle.js",
            swagger_css_url=f"{SWAGGER}/swagger-ui.css",
            swagger_favicon_url=f"{SWAGGER}/favicon-32x32.png",
            # Swagger UI's default sends the schema to validator.swagger.io for a badge.
            swagger_ui_parameters={"validatorUrl": None},
        )

    @app.get("/healthz", tags=["system"], summary="Liveness: the process answers (no auth).")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get(
        "/readyz",
        tags=["system"],
        summary="Readiness: the settled health verdict (no auth, no details); 503 when critical.",
        response_model=Readiness,
        responses={503: {"model": Readiness, "description": "The settled verdict is critical."}},
    )
    def readyz(response: Response) -> dict[str, str]:
        # Only the verdict: an unauthenticated caller (the sentinel, a load balancer) learns nothing
        # of what is wrong. Before the loop's first evaluation there is no verdict: not critical.
        status = metrics.settled_status(services) or "degraded"
        if status == "critical":
            response.status_code = 503
        return {"status": status}

    @app.get(f"{API}/health", tags=["system"], response_model=HealthDocument, responses=ERRORS)
    def health(_: Caller) -> dict[str, Any]:
        return metrics.latest_health(services)

    @app.get("/metrics", tags=["system"], responses=ERRORS, response_class=Response)
    def prometheus(_: Caller) -> Response:
        metrics.count_retention_deletions(services.db)
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    for router in (*domains.routers(), jobs.router, audit.router, status.router):
        app.include_router(router)
    return app
