"""``hubctl serve``: the Hub as a service: API, job workers, and (on one process) the leader's loops.

Start-up pipeline, in order: bind the socket, wait for the database (bounded), migrate, then either
run the service in this process, or (``--api-processes N`` > 1) start N copies of it that share the
bound socket and supervise them (``_supervise``).

The service in one process: become a candidate for the ``leader`` lease, register as a job worker
and start the workers (which first re-enqueue every job still queued), then serve HTTP. The process
that holds the lease (``_LeaderRoles``) reconciles with Proxmox, fails the jobs whose worker is dead
(stale heartbeat: runtime/jobs/workers.py; their effects were just reconciled), and runs the
scheduler, the health loop and the reconcile loop; when it loses the lease it stops those, not the
API nor its workers. So any number of ``serve`` and ``hubctl worker`` processes may share one
PostgreSQL and Redis: the loops run on exactly one of them, and the next one takes them over when
that one dies (runtime/leases.py). On the embedded default (SQLite, in-process jobs) the one process
takes the lease at start and everything runs as before.

Shutdown on SIGTERM/SIGINT (uvicorn handles the signal): stop accepting requests, hand the lease
back, stop the scheduler, let the running job finish within a grace period (what does not finish is
left to reconcile), exit 0.
"""

from __future__ import annotations

import logging
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import uvicorn

from runtime import domains, logs
from runtime.api.app import create_app
from runtime.audit import scrub
from runtime.checkpoints.schedule import CheckpointScheduler
from runtime.db import Database
from runtime.errors import DatabaseError, HubError, OperationError
from runtime.fleet.reconcile import reconcile_owned
from runtime.fleet.schedules import KIND as FLEET_CHECKPOINT
from runtime.fleet.schedules import ProjectSchedules
from runtime.health.loop import run_health_loop
from runtime.jobs.queue import JobQueue
from runtime.leases import DbLease, Leadership
from runtime.machines.cluster_sync import sync_machines
from runtime.machines.projects import ProjectStore
from runtime.metrics import Metrics
from runtime.settings import Settings
from runtime.tokens import BOOTSTRAP_TOKEN_NAME, TokenStore
from runtime.wiring import Services

log = logging.getLogger("hub.service")
SHUTDOWN_GRACE_MS = 30_000
LEADER_LEASE = "leader"
# A child API process that dies sooner than this after its start is not restarted: it would die
# again (bad settings, a broken database); the whole service exits 1 and its supervisor decides.
CHILD_MIN_LIFE_SECONDS = 30.0
# pg_advisory_lock key for migrations at start (any fixed 64-bit number; "hubmigr" in ASCII).
MIGRATION_LOCK_KEY = 0x6875626D69677272


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


def serve(
    settings: Settings, *, host: str, port: int, say: Callable[[str], None], socket_fd: int | None = None
) -> int:
    """Run the service; ``socket_fd``: a child of ``_supervise`` serving on its parent's socket."""
    child = socket_fd is not None
    # A busy port or a bad host is one line and exit 1, before anything else.
    sock = socket.socket(fileno=socket_fd) if child else _listen(host, port)
    if logs.configure(settings.log_level.value):
        say = _logged  # off a terminal the pipeline's own lines are JSON records like every other line
    metrics = Metrics()
    services = Services(settings, proxmox_observer=metrics, lock_observer=metrics)
    wait_for_database(services.db, timeout=settings.db_wait_seconds, say=say)
    if not child:  # the parent migrated, and stored the token, before starting its children
        before, after = _migrate(services.db)
        if settings.api_token_sha256 is not None:  # the token `pulumi up` made: usable without logging in
            TokenStore(services.db).ensure(
                name=BOOTSTRAP_TOKEN_NAME, sha256=settings.api_token_sha256, actor="hubinfra"
            )
        migrated = f" (migrated from {before or 'an empty database'})" if before != after else ""
        say(f"database at {after}{migrated}")
        processes = settings.effective_api_processes()
        if processes > 1:
            services.close()
            try:
                return _supervise(sock, processes=processes, host=host, port=port, say=say)
            finally:
                sock.close()
                logs.shutdown()
    queue: JobQueue | None = None
    leadership: Leadership | None = None
    try:
        hub_vmid = settings.vmid if settings.proxmox_configured else None
        if hub_vmid is None:
            say("Proxmox not configured: serving without checkpoints (health is critical)")
        queue = JobQueue(
            services, kinds=domains.job_kinds(), worker_threads=settings.worker_threads, observer=metrics
        )
        roles = _LeaderRoles(services, queue, metrics, say=say)
        leadership = Leadership(
            DbLease(services.db, LEADER_LEASE, ttl=settings.leader_lease_seconds),
            on_gain=roles.start,
            on_loss=roles.stop,
        )
        # A lone process leads from here: its start-up reconcile and sweep run before its workers
        # start (no job contends with them for a VM lock) and before HTTP, as they always did.
        leadership.start()
        roles.at_start = False
        if settings.worker_threads:
            queue.start_workers()
        if not leadership.leading:
            say("another process leads (scheduler, health and reconcile loops): this one serves and works")
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
        # uvicorn re-raises the signal it caught once it has shut down, to hand it to the handler that
        # was installed before it. Install ours first, so that re-raise ends up here instead of
        # killing the process before the workers and scheduler are stopped.
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, _already_handled)
        server.run(sockets=[sock])
    finally:
        say("stopping: leader's loops (if leading), workers (the running job may finish)")
        if leadership is not None:
            leadership.stop()  # hands the lease back at once: the next leader need not wait its TTL
        if queue is not None:
            queue.stop_workers(timeout_ms=SHUTDOWN_GRACE_MS)
        services.close()
        sock.close()
        logs.shutdown()
    return 0


class _LeaderRoles:
    """What only the leader runs: start-up reconcile and sweep, scheduler, health and reconcile loops.

    ``start``/``stop`` are Leadership's callbacks. The first gain, during start-up, does its
    reconcile before HTTP is served (as a lone Hub always did); a later one (taking over from a dead
    leader) does it on a thread of its own, so the lease keeps being renewed meanwhile."""

    def __init__(self, services: Services, queue: JobQueue, metrics: Metrics, *, say: Callable[[str], None]):
        self.services = services
        self.queue = queue
        self.metrics = metrics
        self.say = say
        self.at_start = True
        self._stop = threading.Event()
        self._scheduler: CheckpointScheduler | None = None
        self._threads: list[threading.Thread] = []
        self._guard = threading.Lock()

    def start(self) -> None:
        self._stop = threading.Event()
        self.say("leading: scheduler, health and reconcile loops run in this process")
        if self.at_start:
            self._lead(self._stop)
        else:
            lead = threading.Thread(target=self._lead, args=(self._stop,), name="leader-start", daemon=True)
            self._threads = [lead]
            lead.start()

    def _lead(self, stop: threading.Event) -> None:
        settings, services, queue, say = self.services.settings, self.services, self.queue, self.say
        hub_vmid = settings.vmid if settings.proxmox_configured else None
        if hub_vmid is not None:
            _startup_step("reconcile at start", lambda: _reconcile_once(services, say=say), say)
        interrupted: list[str] = []
        _startup_step("sweep", lambda: interrupted.extend(queue.sweep_orphans()), say)
        if interrupted:
            say(f"{len(interrupted)} job(s) interrupted by a stopped worker marked failed")
        with self._guard:
            if stop.is_set():  # lost the lease while reconciling
                return
            if settings.proxmox_configured:
                # One scheduler: the Hub's own schedule (when it has a VM) and every project's
                # scheduled fleet checkpoint (runtime/fleet/schedules.py), both on the leader only.
                projects = ProjectSchedules(
                    projects=ProjectStore(services.db, actor="scheduler"),
                    submit=lambda kind, params: queue.submit(kind, params, actor="scheduler"),
                    # What this scheduler (any leader's) last submitted per project: the catch-up memory.
                    last_run=lambda name: queue.store.last_submitted(
                        FLEET_CHECKPOINT, actor="scheduler", param=("project", name)
                    ),
                )
                self._scheduler = CheckpointScheduler(
                    settings=settings,
                    db=services.db,
                    vmid=hub_vmid,
                    job=lambda: _submit_scheduled(queue),
                    heartbeats=services.heartbeats,
                    parts=[projects],
                )
                if self._scheduler.start():
                    say("a scheduled checkpoint was missed while no Hub led: one catch-up run queued")
            loops = [
                threading.Thread(
                    target=run_health_loop,
                    args=(services, self.metrics, settings, stop),
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
            self._threads = [*self._threads, *loops]

    def stop(self) -> None:
        self.say("no longer leading: scheduler, health and reconcile loops stopped here")
        with self._guard:
            self._stop.set()
            if self._scheduler is not None:
                self._scheduler.shutdown(wait=False)
                self._scheduler = None
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=5)
        self._threads = []


def _supervise(
    sock: socket.socket, *, processes: int, host: str, port: int, say: Callable[[str], None]
) -> int:
    """Run ``processes`` copies of the service on the bound socket (the kernel spreads connections
    over the processes accepting on it, as with uvicorn's own ``--workers``) and keep them running.

    Each copy is a whole service (API, job workers, leader candidate: the lease keeps the loops on
    one). Each is started with ``hubctl serve --socket-fd``, in its own process group and with
    Linux's parent-death signal, as the lab starts its children (runtime/lab/processes.py): a
    Ctrl-C on the terminal reaches this process only, which stops them in order, and if this one
    is killed they get SIGTERM from the kernel. SIGTERM/SIGINT here: SIGTERM to each, wait for the
    grace period, then SIGKILL what is left. A child that dies is started again, unless it died
    young (it would again): then every child is stopped and this exits 1."""
    from runtime.lab.processes import child_options

    fd = sock.fileno()
    argv = [
        sys.executable,
        "-m",
        "runtime",
        "serve",
        "--host",
        host,
        "--port",
        str(port),
        "--socket-fd",
        str(fd),
    ]
    stopping = threading.Event()

    def spawn() -> tuple[subprocess.Popen[Any], float]:
        return subprocess.Popen(argv, pass_fds=(fd,), **child_options()), time.monotonic()

    def on_signal(_signum: int, _frame: object) -> None:
        stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    children = [spawn() for _ in range(processes)]
    pids = ", ".join(str(c.pid) for c, _ in children)
    say(f"serving on http://{host}:{port} with {processes} API processes (pids {pids})")
    code = 0
    while not stopping.wait(0.5):
        for i, (child, born) in enumerate(children):
            if child.poll() is None:
                continue
            if time.monotonic() - born < CHILD_MIN_LIFE_SECONDS:
                say(
                    f"API process {child.pid} exited ({child.returncode}) soon after its start: "
                    "stopping the service"
                )
                code = 1
                stopping.set()
                break
            children[i] = spawn()
            say(
                f"API process {child.pid} exited ({child.returncode}): "
                f"started {children[i][0].pid} in its place"
            )
    say("stopping the API processes")
    for child, _ in children:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + SHUTDOWN_GRACE_MS / 1000 + 15
    for child, _ in children:
        try:
            child.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait(timeout=10)
    return code


def _migrate(db: Database) -> tuple[str | None, str]:
    """Migrate, one ``serve`` at a time: several may start at once on one PostgreSQL (scale-out),
    and two Alembic runs on an empty database would both create the same tables. A session-level
    advisory lock serialises them (the next one then finds nothing to do); PostgreSQL frees it if
    the holder's connection dies. SQLite is one file on one host: its own write lock suffices."""
    if db.engine.dialect.name != "postgresql":
        return db.upgrade()
    from sqlalchemy import text

    from runtime.db.session import UNAVAILABLE, reason

    try:
        with db.engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:key)"), {"key": MIGRATION_LOCK_KEY})
            try:
                return db.upgrade()
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": MIGRATION_LOCK_KEY})
    except UNAVAILABLE as exc:
        raise DatabaseError(f"cannot migrate: {reason(exc)}") from None


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
    every ``reconcile_interval_seconds``, soon after a job here ends abnormally, and as soon as the
    sweep (every heartbeat interval: one query) finds a job whose worker died, in any process."""
    while not stop.is_set():
        deadline = time.monotonic() + settings.reconcile_interval_seconds
        next_sweep = time.monotonic() + settings.worker_heartbeat_seconds
        orphans: list[str] = []
        while not stop.wait(0.5):
            if queue.abnormal_end.is_set() or time.monotonic() >= deadline:
                break
            if time.monotonic() >= next_sweep:
                next_sweep = time.monotonic() + settings.worker_heartbeat_seconds
                try:
                    orphans = queue.sweep_orphans()
                except HubError as exc:
                    log.warning("sweep of jobs whose worker died: %s", exc)
                if orphans:
                    break
        if stop.is_set():
            return
        queue.abnormal_end.clear()
        try:
            orphans += queue.sweep_orphans()
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
