"""``hubctl serve``: the Hub as a service: API, job workers, scheduler and health loop in one process.

Start-up pipeline, in order: wait for the database (bounded), migrate, reconcile with Proxmox, fail
the jobs a dead process left running (their effects were just reconciled), start the workers (which
first re-enqueue every job still queued), the scheduler and the health loop, then serve HTTP.

Shutdown on SIGTERM/SIGINT (uvicorn handles the signal): stop accepting requests, stop the scheduler,
let the running job finish within a grace period (what does not finish is left to reconcile at the
next start), exit 0. One orchestrator per Hub is assumed (compose runs one): a second one sharing
the database would see the first one's running jobs as interrupted.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from collections.abc import Callable

import uvicorn

from runtime import domains, logs
from runtime.api.app import create_app
from runtime.audit import scrub
from runtime.checkpoints.schedule import CheckpointScheduler
from runtime.db import Database
from runtime.errors import DatabaseError, HubError, OperationError
from runtime.fleet.reconcile import reconcile_owned
from runtime.health.loop import run_health_loop
from runtime.jobs.queue import JobQueue
from runtime.leases import DbLease
from runtime.machines.cluster_sync import sync_machines
from runtime.metrics import Metrics
from runtime.settings import Settings
from runtime.tokens import BOOTSTRAP_TOKEN_NAME, TokenStore
from runtime.wiring import Services

log = logging.getLogger("hub.service")
SHUTDOWN_GRACE_MS = 30_000
SERVICE_LEASE = "service"
# Renewed every third of it: a live service keeps it through two missed renewals (a database
# restart); a dead one frees it within this long.
LEASE_TTL_SECONDS = 30.0


def wait_for_database(db: Database, *, timeout: float, say: Callable[[str], None]) -> None:
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            db.current_revision()
            return
        except DatabaseError as exc:
            if time.monotonic() >= deadline:
                raise DatabaseError(f"database not reachable after {timeout:.0f}s: {exc}") from None
            if not announced:
                say(f"waiting for the database ({exc})")
                announced = True
            time.sleep(1.0)


def serve(settings: Settings, *, host: str, port: int, say: Callable[[str], None]) -> int:
    sock = _listen(host, port)  # a busy port or a bad host is one line and exit 1, before anything else
    if logs.configure(settings.log_level.value):
        say = _logged  # off a terminal the pipeline's own lines are JSON records like every other line
    metrics = Metrics()
    services = Services(settings, proxmox_observer=metrics, lock_observer=metrics)
    wait_for_database(services.db, timeout=settings.db_wait_seconds, say=say)
    before, after = services.db.upgrade()
    lease = DbLease(services.db, SERVICE_LEASE, ttl=LEASE_TTL_SECONDS)
    lease.acquire()  # a second serve on this database stops here, naming the first, in one line
    if settings.api_token_sha256 is not None:  # the token `pulumi up` made: usable without logging in
        TokenStore(services.db).ensure(
            name=BOOTSTRAP_TOKEN_NAME, sha256=settings.api_token_sha256, actor="hubinfra"
        )
    migrated = f" (migrated from {before or 'an empty database'})" if before != after else ""
    say(f"database at {after}{migrated}")
    stop = threading.Event()
    queue: JobQueue | None = None
    scheduler: CheckpointScheduler | None = None
    loops: list[threading.Thread] = []
    try:
        hub_vmid = settings.vmid if settings.proxmox_configured else None
        if hub_vmid is None:
            say("Proxmox not configured: serving without checkpoints (health is critical)")
        else:
            _startup_step("reconcile at start", lambda: _reconcile_once(services, say=say), say)
        queue = JobQueue(
            services, kinds=domains.job_kinds(), worker_threads=settings.worker_threads, observer=metrics
        )
        interrupted = queue.sweep_orphans()
        if interrupted:
            say(f"{len(interrupted)} job(s) interrupted by the previous stop marked failed")
        queue.start_workers()
        if hub_vmid is not None:
            scheduler = CheckpointScheduler(
                settings=settings,
                db=services.db,
                vmid=hub_vmid,
                job=lambda: _submit_scheduled(queue),
                heartbeats=services.heartbeats,
            )
            if scheduler.start():
                say("a scheduled checkpoint was missed while the Hub was down: one catch-up run queued")
        loops = [
            threading.Thread(
                target=run_health_loop,
                args=(services, metrics, settings, stop),
                name="health-loop",
                daemon=True,
            ),
            threading.Thread(
                target=_reconcile_loop,
                args=(services, queue, settings, stop),
                name="reconcile-loop",
                daemon=True,
            ),
        ]
        for loop in loops:
            loop.start()
        app = create_app(services=services, queue=queue, metrics=metrics)
        say(f"serving on http://{host}:{port} (API under /api/v1, liveness at /healthz)")
        server = uvicorn.Server(
            uvicorn.Config(
                app,
                host=host,
                port=port,
                lifespan="on",
                timeout_graceful_shutdown=10,
                # Our handler (runtime.logs) formats uvicorn's warnings too; the access line is ours.
                log_config=None,
                access_log=False,
            )
        )

        def lost() -> None:
            say("the service lease was taken by another process: stopping")
            server.should_exit = True

        lease.keep_renewed(every=LEASE_TTL_SECONDS / 3, on_lost=lost)
        # uvicorn re-raises the signal it caught once it has shut down, to hand it to the handler that
        # was installed before it. Install ours first, so that re-raise ends up here instead of
        # killing the process before the workers and scheduler are stopped.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _already_handled)
        server.run(sockets=[sock])
    finally:
        say("stopping: scheduler, workers (the running job may finish), loops")
        stop.set()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        if queue is not None:
            queue.stop_workers(timeout_ms=SHUTDOWN_GRACE_MS)
        for loop in loops:
            loop.join(timeout=5)
        lease.release()
        services.close()
        sock.close()
        logs.shutdown()
    return 0


def _logged(message: str) -> None:
    log.info("%s", message)


def _listen(host: str, port: int) -> socket.socket:
    """Bind before anything else, and hand the socket to uvicorn: a port already in use or a host that
    does not resolve is one clear line (exit 1), not a traceback after the start-up pipeline ran."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OperationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise OperationError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.set_inheritable(True)
    return sock


def _startup_step(name: str, step: Callable[[], None], say: Callable[[str], None]) -> None:
    """Run one start-up step; whatever goes wrong is said (without secrets) and the service still
    comes up, with health saying what is wrong, instead of dying into a restart loop."""
    try:
        step()
    except HubError as exc:
        say(f"{name} failed: {exc}")
    except Exception as exc:  # unexpected: name it, never with a traceback that could carry a secret
        say(f"{name} failed unexpectedly: {type(exc).__name__}: {scrub(str(exc))}")


def _submit_scheduled(queue: JobQueue) -> None:
    queue.submit("checkpoint.create", {"kind": "scheduled", "reason": "schedule"}, actor="scheduler")


def _reconcile_once(services: Services, *, say: Callable[[str], None] | None = None) -> None:
    """Reconcile every VM the Hub owns, each on its own (runtime.fleet.reconcile)."""
    _import_journal(services)
    done = reconcile_owned(services, actor="service", audit_steady=False)
    for failure in done.failed:
        log.warning("%s", failure["error"])
        if say is not None:
            say(str(failure["error"]))
    for report in done.reports:
        message = f"reconciled VM {report.vm_id}: {len(report.changes)} change(s)"
        if report.unsettled:
            message += f", {len(report.unsettled)} left for the next run"
        if say is not None:
            say(message)
        elif report.changes or report.unsettled:
            log.info(message)


def _import_journal(services: Services) -> None:
    """The sentinel's journal from the Hub VM's description into hub_recovery_events (never fatal)."""
    from runtime.sentinel.hub_import import import_recovery_journal

    try:
        import_recovery_journal(services)
    except HubError as exc:
        log.warning("recovery journal not imported: %s", exc)


def _reconcile_loop(services: Services, queue: JobQueue, settings: Settings, stop: threading.Event) -> None:
    """Settle what a killed worker or a lost database left behind, without waiting for a restart:
    every ``reconcile_interval_seconds``, and soon after a job ends abnormally."""
    while not stop.is_set():
        deadline = time.monotonic() + settings.reconcile_interval_seconds
        while not stop.wait(0.5):
            if queue.abnormal_end.is_set() or time.monotonic() >= deadline:
                break
        if stop.is_set():
            return
        queue.abnormal_end.clear()
        try:
            orphans = queue.sweep_orphans()
            if orphans:
                log.warning("%d job(s) whose worker is gone marked interrupted", len(orphans))
            resent = queue.resend_stale()
            if resent:
                log.warning("%d job(s) queued for long without a worker sent again", len(resent))
            if settings.proxmox_configured and settings.vmid is not None:
                _reconcile_once(services)
            sync_machines(services, observer=services.proxmox_observer)
        except HubError as exc:
            log.warning("periodic reconcile: %s", exc)
        except Exception:  # the loop must outlive any single failed run
            log.exception("periodic reconcile failed")


def _already_handled(_signum: int, _frame: object) -> None:
    """uvicorn already acted on the signal (graceful HTTP shutdown); the pipeline's finally does the rest."""
