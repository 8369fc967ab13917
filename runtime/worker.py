"""``hubctl worker``: a process that only runs jobs, from the Redis broker every process shares.

Scale-out for a Hub with many machines: any number of these (``docker compose up --scale
worker=N``, or several systemd units) next to the ``serve`` processes, on one PostgreSQL and one
Redis. Each registers in the worker registry and heartbeats (runtime/jobs/workers.py): the jobs it
claims are never marked interrupted while it lives, and are settled by the leader's sweep and
reconcile once its heartbeat goes stale. It runs no scheduler, loop or API: those are ``serve``'s.

It does not migrate (two processes migrating one database at once could collide): it waits, bounded
by ``db_wait_seconds``, until the schema is the one this code needs, which ``serve`` (or ``hubctl db
upgrade``) brings it to. SIGTERM/SIGINT: stop taking jobs, let the running ones finish within the
grace period, leave the registry, exit 0.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from runtime import domains, logs
from runtime.db import Database
from runtime.errors import OperationError, UsageError
from runtime.jobs.queue import JobQueue
from runtime.jobs.registry import JobKinds
from runtime.serve import SHUTDOWN_GRACE_MS, wait_for_database
from runtime.settings import Settings
from runtime.wiring import Services

log = logging.getLogger("hub.worker")
DEFAULT_THREADS = 2


def run_worker(
    settings: Settings,
    *,
    say: Callable[[str], None],
    threads: int | None = None,
    kinds: JobKinds | None = None,
    alive_file: Path | None = None,
) -> int:
    """Run job workers until SIGTERM/SIGINT. ``kinds``: the domains' (benchmarks add their own)."""
    if settings.redis_url is None:
        raise UsageError(
            "hubctl worker needs HUB_REDIS_URL: workers in other processes take their jobs from the shared "
            "Redis broker (without Redis, hubctl serve runs the jobs itself)"
        )
    if logs.configure(settings.log_level.value):
        say = _logged
    services = Services(settings)
    queue: JobQueue | None = None
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        wait_for_database(services.db, timeout=settings.db_wait_seconds, say=say)
        _wait_for_schema(services.db, timeout=settings.db_wait_seconds, stop=stop, say=say)
        if stop.is_set():
            return 0
        count = threads or settings.worker_threads or DEFAULT_THREADS
        queue = JobQueue(services, kinds=kinds or domains.job_kinds(), worker_threads=count, role="worker")
        if alive_file is not None:  # touched at each heartbeat written: the container's health check
            queue.registry.on_beat = alive_file.touch
        # Queued messages are in Redis already; the leader sends again the ones that were lost.
        queue.start_workers(resend_queued=False)
        redis = urlsplit(settings.redis_url)
        say(f"worker {queue.registry.id}: {count} thread(s) on redis {redis.hostname}:{redis.port or 6379}")
        while not stop.wait(1.0):
            pass
        say("stopping: no new jobs; the running ones may finish")
    finally:
        if queue is not None:
            queue.stop_workers(timeout_ms=SHUTDOWN_GRACE_MS)
        services.close()
        logs.shutdown()
    return 0


def _wait_for_schema(
    db: Database, *, timeout: float, stop: threading.Event, say: Callable[[str], None]
) -> None:
    deadline = time.monotonic() + timeout
    head = db.head_revision()
    announced = False
    while not stop.is_set():
        current = db.current_revision()
        if current == head:
            return
        if time.monotonic() >= deadline:
            raise OperationError(
                f"the database schema is at {current or 'nothing'}, this worker needs {head}: run "
                "hubctl db upgrade (hubctl serve migrates at start)"
            )
        if not announced:
            say(f"waiting for the database schema to reach {head} (it is at {current or 'nothing'})")
            announced = True
        stop.wait(1.0)


def _logged(message: str) -> None:
    log.info("%s", message)
