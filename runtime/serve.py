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
import threading
import time
from collections.abc import Callable

import uvicorn

from runtime import domains
from runtime.api.app import create_app
from runtime.checkpoints.reconcile import Reconciler
from runtime.checkpoints.schedule import CheckpointScheduler
from runtime.db import Database
from runtime.errors import DatabaseError, HubError
from runtime.jobs.queue import JobQueue
from runtime.metrics import Metrics
from runtime.settings import Settings
from runtime.wiring import Services

log = logging.getLogger("hub.service")
SHUTDOWN_GRACE_MS = 30_000


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
    services = Services(settings)
    wait_for_database(services.db, timeout=settings.db_wait_seconds, say=say)
    before, after = services.db.upgrade()
    say(f"database at {after}" + (f" (migrated from {before})" if before != after else ""))
    hub_vmid = settings.vmid if settings.proxmox_configured else None
    if hub_vmid is not None:
        try:
            report = Reconciler.build(services, actor="service").run()
            say(f"reconciled VM {report.vm_id}: {len(report.changes)} change(s)")
        except HubError as exc:  # the API must still come up: health will say what is wrong
            say(f"reconcile at start failed: {exc}")
    else:
        say("Proxmox not configured: serving without checkpoints (health is critical)")

    queue = JobQueue(services, kinds=domains.job_kinds(), worker_threads=settings.worker_threads)
    interrupted = queue.store.fail_interrupted()
    if interrupted:
        say(f"{len(interrupted)} job(s) interrupted by the previous stop marked failed")
    queue.start_workers()
    metrics = Metrics()
    scheduler = (
        CheckpointScheduler(
            settings=settings,
            db=services.db,
            vmid=hub_vmid,
            job=lambda: queue.submit(
                "checkpoint.create", {"kind": "scheduled", "reason": "schedule"}, actor="scheduler"
            ),
        )
        if hub_vmid is not None
        else None
    )
    stop = threading.Event()
    health_loop = threading.Thread(
        target=_health_loop, args=(services, metrics, settings, stop), name="health-loop", daemon=True
    )
    try:
        if scheduler is not None and scheduler.start():
            say("a scheduled checkpoint was missed while the Hub was down: one catch-up run queued")
        health_loop.start()
        app = create_app(services=services, queue=queue, metrics=metrics)
        say(f"serving on http://{host}:{port} (API under /api/v1, liveness at /healthz)")
        server = uvicorn.Server(
            uvicorn.Config(
                app, host=host, port=port, log_level="warning", lifespan="on", timeout_graceful_shutdown=10
            )
        )
        # uvicorn re-raises the signal it caught once it has shut down, to hand it to the handler that
        # was installed before it. Install ours first, so that re-raise ends up here instead of
        # killing the process before the workers and scheduler are stopped.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _already_handled)
        server.run()
    finally:
        say("stopping: scheduler, workers (the running job may finish), health loop")
        stop.set()
        if scheduler is not None:
            scheduler.shutdown(wait=False)
        queue.stop_workers(timeout_ms=SHUTDOWN_GRACE_MS)
        if health_loop.is_alive():
            health_loop.join(timeout=5)
        services.close()
    return 0


def _already_handled(_signum: int, _frame: object) -> None:
    """uvicorn already acted on the signal (graceful HTTP shutdown); the pipeline's finally does the rest."""


def _health_loop(services: Services, metrics: Metrics, settings: Settings, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            metrics.refresh(services)
        except Exception:  # the loop must outlive any single failed evaluation
            log.exception("health evaluation failed")
        stop.wait(settings.health_interval_seconds)
