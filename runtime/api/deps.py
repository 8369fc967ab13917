"""What every router depends on: the caller's identity and the service's shared objects.

The objects live on ``app.state`` (set once by ``create_app``); these dependencies hand them to the
routes. Plain lookups are ``async`` so FastAPI runs them on the event loop instead of a thread hop
(a sync dependency costs a hop to the thread pool per request, ~0.1-0.3 ms under load).

Authentication is ``async`` too: a token verified in the last ``VERIFIED_FOR`` seconds is answered
from memory on the event loop (``VerifiedTokens``); otherwise the token table is read in the thread
pool, as before. So a revoked token is refused within ``VERIFIED_FOR`` seconds of ``hubctl token
revoke`` (bounded, not immediate: the revocation is written by another process), and an unknown or
revoked token is never remembered: it is checked against the database every time.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid as uuidlib
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import Depends, Query, Request, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BeforeValidator

from runtime.api.errors import Unauthorized
from runtime.api.schemas import ErrorBody
from runtime.db import Database
from runtime.errors import NotFoundError, UsageError
from runtime.jobs.queue import JobQueue
from runtime.logs import note_actor
from runtime.tokens import TokenStore
from runtime.wiring import Services

API = "/api/v1"
bearer = HTTPBearer(auto_error=False, description="A token from `hubctl token create`.")


async def _services(request: Request) -> Services:
    return request.app.state.services


async def _queue(request: Request) -> JobQueue:
    return request.app.state.queue


# How long a successful verification is remembered: the bound on how late a revocation takes effect.
VERIFIED_FOR = 2.0
# At most this many remembered tokens (there are a handful in practice); past it, start afresh.
MAX_VERIFIED = 1024


class VerifiedTokens:
    """Tokens the database accepted in the last ``ttl`` seconds, by the SHA-256 of the whole token
    (the secret itself is not kept), with their names. Only successes are remembered."""

    def __init__(self, store: TokenStore, *, ttl: float = VERIFIED_FOR, clock: Any = time.monotonic) -> None:
        self.store = store
        self.ttl = ttl
        self.clock = clock
        self._seen: dict[bytes, tuple[str, float]] = {}
        self._lock = threading.Lock()

    def recent(self, presented: str) -> str | None:
        key = hashlib.sha256(presented.encode()).digest()
        with self._lock:
            hit = self._seen.get(key)
        if hit is None or hit[1] <= self.clock():
            return None
        return hit[0]

    def verify(self, presented: str) -> str | None:
        """The database's answer (``TokenStore.verify``), remembered when it is a name."""
        name = self.store.verify(presented)
        if name is not None:
            key = hashlib.sha256(presented.encode()).digest()
            with self._lock:
                if len(self._seen) >= MAX_VERIFIED:
                    self._seen.clear()
                self._seen[key] = (name, self.clock() + self.ttl)
        return name

    async def name_of(self, presented: str) -> str | None:
        name = self.recent(presented)
        if name is None:
            name = await anyio.to_thread.run_sync(self.verify, presented)
        return name


async def caller(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]
) -> str:
    """The authenticated caller's actor name (``api:<token name>``), or 401; noted for the access line.

    Not swapped in through ``app.dependency_overrides``: FastAPI analyses an overridden dependency's
    signature again on every request (pydantic adapters built per call: ~40% of a list request)."""
    tokens: VerifiedTokens = request.app.state.verified_tokens
    name = await tokens.name_of(credentials.credentials) if credentials is not None else None
    if name is None:
        raise Unauthorized("missing, unknown or revoked bearer token")
    actor = f"api:{name}"
    note_actor(request.state, actor)
    return actor


Caller = Annotated[str, Depends(caller)]
ServicesDep = Annotated[Services, Depends(_services)]
QueueDep = Annotated[JobQueue, Depends(_queue)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=1_000_000)]


def _decimal_digits(value: Any) -> Any:
    # A query value is text; int's lax parsing would also take "100.0", " 100" and "1_000".
    if isinstance(value, str) and not (value.isascii() and value.isdigit()):
        raise ValueError("must be a whole number written in decimal digits")
    return value


_VmIdParam = Annotated[int | None, BeforeValidator(_decimal_digits)]


async def vm_id_query(
    vm_id: Annotated[_VmIdParam, Query(ge=100, le=999_999_999, description="Only this VM.")] = None,
    vmid: Annotated[
        _VmIdParam, Query(ge=100, le=999_999_999, deprecated=True, description="Old name of `vm_id`.")
    ] = None,
) -> int | None:
    """``?vm_id=`` (and the first wave's ``?vmid=``, still accepted)."""
    if vm_id is not None and vmid is not None and vm_id != vmid:
        raise UsageError(f"vm_id={vm_id} and vmid={vmid} name different VMs; give one")
    return vm_id if vm_id is not None else vmid


VmIdQuery = Annotated[int | None, Depends(vm_id_query)]
ERRORS: dict[int | str, dict[str, Any]] = {401: {"model": ErrorBody}, 422: {"model": ErrorBody}}
NOT_FOUND: dict[int | str, dict[str, Any]] = {**ERRORS, 404: {"model": ErrorBody}}
# A route that asks Proxmox before answering (a VM lookup): 502 when Proxmox fails (errors.STATUS).
UPSTREAM: dict[int | str, dict[str, Any]] = {**NOT_FOUND, 502: {"model": ErrorBody}}
BUSY: dict[int | str, dict[str, Any]] = {**UPSTREAM, 409: {"model": ErrorBody}}


T = TypeVar("T")


async def quick_read(db: Database, read: Callable[[], T]) -> T:
    """Run a short read-only query for an ``async`` route: inline on the event loop when the database
    is the embedded SQLite file, in the thread pool otherwise.

    Why inline: on a loaded process the hop to a worker thread and back (two GIL hand-overs, a
    futex wake-up each way) cost more CPU than the 50-row read it carried (measured: 1.99 against
    1.20 ms per list request; docs/performance.md). Why only SQLite: it is a local file in WAL mode,
    where a reader never waits for a writer, so the loop is held for the read's own CPU time (which
    the GIL would serialise anyway); what could still hold it is a pool with every connection
    checked out (15 by default, against the 6 API threads and the job workers). A PostgreSQL read
    waits on the network and, in an outage, on connect timeouts: that wait must never stall the loop
    (and ``/healthz`` with it), so it keeps the pool. The schema check (``ensure_ready``) happened
    when the app was built."""
    if db.is_sqlite:
        return read()
    return await anyio.to_thread.run_sync(read)


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
