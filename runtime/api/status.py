"""``/status``: a read-only page for a person, beside the API: health with its checks, the checkpoint
timeline, recent jobs with their progress, recent audit entries.

Server-rendered (Jinja2, autoescaped), one stylesheet served by the Hub itself, no script, no CDN, no
build step: it works on the Hub's isolated management network. It refreshes itself every 15 s.

Authentication is the API's: a bearer token. A browser cannot send that header from an address bar,
so the login form takes the token once and sets it as a cookie that is ``HttpOnly`` (no script can
read it), ``SameSite=Strict`` (no other site's page can send it), ``Secure`` over HTTPS and scoped to
``/status``. Only these read-only page routes honour the cookie; the API under ``/api/v1`` keeps
requiring the header, so the cookie can never be used to change anything (no CSRF surface). The
cookie holds the token itself, so revoking the token (``hubctl token revoke``) logs the browser out.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import parse_qs

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.security import HTTPAuthorizationCredentials

from runtime import audit
from runtime.api.deps import QueueDep, ServicesDep, bearer
from runtime.checkpoints.queries import CheckpointQueries
from runtime.jobs.queue import JobQueue
from runtime.metrics import Metrics
from runtime.tokens import TokenStore
from runtime.wiring import Services

if TYPE_CHECKING:
    from jinja2 import Environment

COOKIE = "hub_status_token"
COOKIE_SECONDS = 12 * 3600
ROWS = 20
REFRESH_SECONDS = 15
# The page loads its stylesheet from the Hub and nothing else; forms post only back to the Hub.
POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


@functools.cache
def templates() -> Environment:
    """Jinja2 is loaded on the first page view, not at start: a service nobody browses does not
    carry it (~2 MiB of resident memory, issue 9)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    return Environment(
        loader=FileSystemLoader(Path(__file__).with_name("templates")),
        autoescape=select_autoescape(default=True),
        trim_blocks=True,
        lstrip_blocks=True,
    )


router = APIRouter(prefix="/status", include_in_schema=False)


def page_caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str | None:
    """The caller's token name from the bearer header or the page's cookie; None when neither is valid."""
    presented = credentials.credentials if credentials is not None else request.cookies.get(COOKIE)
    if not presented:
        return None
    store: TokenStore = request.app.state.tokens
    return store.verify(presented)


PageCaller = Annotated[str | None, Depends(page_caller)]


def render(name: str, *, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates().get_template(name).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=HEADERS)


@router.get("")
def status_page(request: Request, caller: PageCaller, services: ServicesDep, queue: QueueDep) -> Response:
    if caller is None:
        return RedirectResponse("/status/login", status_code=303, headers=HEADERS)
    metrics: Metrics = request.app.state.metrics
    return render("status.html", caller=caller, refresh=REFRESH_SECONDS, **snapshot(services, queue, metrics))


def snapshot(services: Services, queue: JobQueue, metrics: Metrics) -> dict[str, Any]:
    """Everything the page shows, read once per request (database only; health from the loop)."""
    db = services.ready_db()
    checkpoints, checkpoint_total = CheckpointQueries(db).page(limit=ROWS)
    jobs, job_total = queue.store.page(limit=ROWS)
    with db.session() as s:
        entries, audit_total = audit.page(s, limit=ROWS)
    return {
        "health": metrics.latest_health(services),
        "checkpoints": [cp.to_public() for cp in checkpoints],
        "checkpoint_total": checkpoint_total,
        "jobs": jobs,
        "job_total": job_total,
        "audit": entries,
        "audit_total": audit_total,
    }


@router.get("/login")
def login_form(caller: PageCaller) -> Response:
    if caller is not None:
        return RedirectResponse("/status", status_code=303, headers=HEADERS)
    return render("login.html")


@router.post("/login")
async def login(request: Request) -> Response:
    # A urlencoded form of one field: parsed here rather than pulling in a multipart parser.
    form = parse_qs((await request.body()).decode("utf-8", "replace"), max_num_fields=4)
    token = (form.get("token") or [""])[0].strip()
    store: TokenStore = request.app.state.tokens
    if not token or await anyio.to_thread.run_sync(store.verify, token) is None:
        return render("login.html", status_code=401, error="unknown or revoked token")
    response = RedirectResponse("/status", status_code=303, headers=HEADERS)
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_SECONDS,
        path="/status",
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
def logout() -> Response:
    response = RedirectResponse("/status/login", status_code=303, headers=HEADERS)
    response.delete_cookie(COOKIE, path="/status", httponly=True, samesite="strict")
    return response
