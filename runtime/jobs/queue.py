"""Submitting and running jobs through Dramatiq.

With ``HUB_REDIS_URL`` the broker is Dramatiq's Redis broker: messages survive a restart and a
message taken by a worker that died is redelivered. On the embedded default it is Dramatiq's
in-memory StubBroker, consumed by the same Worker threads in this process: the same code path,
only the transport differs. Either way the queue carries only the job id; the database row is the
job (see store.py), and at start every job still ``queued`` there is enqueued again (the claim makes
duplicates harmless), so nothing queued is lost when the in-memory broker goes away with a process.

The queue knows no job kind: the domains register theirs (``runtime.jobs.registry``), and the queue
is built with the collected ``JobKinds``.

Several processes may run workers on one database and Redis (``hubctl serve`` processes and
``hubctl worker`` processes): each registers in the worker registry (workers.py) and heartbeats, a
job records the worker that claimed it, and the sweep marks a running job interrupted only when that
worker is dead, never while it heartbeats.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from datetime import timedelta
from typing import Any, Protocol, cast

import dramatiq
from dramatiq.brokers.stub import StubBroker
from dramatiq.worker import WorkerThread

from runtime.db.retry import retry_write
from runtime.errors import DatabaseError, HubError
from runtime.heartbeats import Heartbeats
from runtime.jobs.registry import JobContext, JobKinds
from runtime.jobs.store import JobStore
from runtime.jobs.workers import WorkerRegistry, WorkerTiming
from runtime.wiring import Services

log = logging.getLogger(__name__)
QUEUE = "hub"
# A queued job no worker took for this long has probably lost its message: it is sent again.
STALE_QUEUED = timedelta(minutes=2)
ACTOR = "hub_job"


class JobObserver(Protocol):
    """Told of every job that ran to an end here (``outcome`` is ``succeeded`` or ``failed``), with
    its result when it succeeded: the service's metrics. Must not raise."""

    def on_job_end(
        self, kind: str, *, outcome: str, seconds: float, result: dict[str, Any] | None
    ) -> None: ...


class _WorkerLiveness(dramatiq.Middleware):
    """Registers each Dramatiq worker thread with the process's heartbeats when it boots (so a thread
    that dies is noticed) and forgets it when it shuts down on purpose."""

    def __init__(self, heartbeats: Heartbeats) -> None:
        self.heartbeats = heartbeats

    def after_worker_thread_boot(self, broker: dramatiq.Broker, thread: WorkerThread) -> None:
        self.heartbeats.watch_thread(_beat_name(thread), thread, role="worker")

    def before_worker_thread_shutdown(self, broker: dramatiq.Broker, thread: WorkerThread) -> None:
        self.heartbeats.forget(_beat_name(thread))


def _beat_name(thread: threading.Thread) -> str:
    return f"worker:{thread.name}"


def _redis_broker(url: str) -> dramatiq.Broker:
    """Dramatiq's Redis broker, imported only when Redis is configured: the module imports redis-py,
    whose ``observability`` package loads OpenTelemetry (~7 MiB and ~180 modules that a ``serve`` on
    the embedded default would keep for its whole life without ever using them)."""
    from dramatiq.brokers.redis import RedisBroker

    return RedisBroker(url=url)


class JobQueue:
    def __init__(
        self,
        services: Services,
        *,
        kinds: JobKinds,
        worker_threads: int = 2,
        observer: JobObserver | None = None,
        role: str = "serve",
    ) -> None:
        self.services = services
        self.observer = observer
        self.kinds = kinds
        self.store = JobStore(services.ready_db())
        url = services.settings.redis_url
        self.broker: dramatiq.Broker = _redis_broker(url) if url else StubBroker()
        self.heartbeats = services.heartbeats
        self.broker.add_middleware(_WorkerLiveness(self.heartbeats))
        # Our jobs are not retried by the queue: a failed checkpoint is a result to report, and the
        # operation's own retries (Proxmox client) already ran.
        self.actor: dramatiq.Actor[[str], None] = dramatiq.Actor(
            self._run,
            broker=self.broker,
            actor_name=ACTOR,
            queue_name=QUEUE,
            priority=0,
            options={
                "max_retries": 0,
                "time_limit": int(services.settings.task_timeout_seconds * 3 * 1000),
            },
        )
        self.worker_threads = worker_threads
        settings = services.settings
        self.registry = WorkerRegistry(
            self.store.db,
            role=role,
            timing=WorkerTiming(
                heartbeat=settings.worker_heartbeat_seconds, stale_after=settings.worker_stale_seconds
            ),
        )
        self._worker: dramatiq.Worker | None = None
        # Jobs this process is running (added before the claim, so a sweep never sees one of ours
        # running in the database without it here).
        self._running: set[str] = set()
        self._running_lock = threading.Lock()
        # Set when a job ends abnormally, so the service's reconcile loop runs soon, not at its tick.
        self.abnormal_end = threading.Event()

    # ---------------------------------------------------------------- submit

    def submit(self, kind: str, params: dict[str, Any], *, actor: str) -> dict[str, Any]:
        """Validate the parameters with the kind's model, write the job (and its audit entry), send it.

        Unknown kinds and bad parameters are refused (UsageError) before anything is written."""
        job_kind = self.kinds.get(kind)
        typed = job_kind.parse(params)
        job = self.store.create(
            kind=kind, params=typed.model_dump(mode="json", exclude_none=True), actor=actor
        )
        self.actor.send(job["id"])
        return job

    # --------------------------------------------------------------- workers

    def start_workers(self, *, resend_queued: bool = True) -> None:
        """Register this process as a worker (heartbeating from now on) and start worker threads,
        after re-enqueueing what a previous process left (``resend_queued``: needed for the in-memory
        broker, whose messages died with that process; on Redis they are still there, and the
        leader's ``resend_stale`` covers a lost one)."""
        self.registry.start()  # before the first claim: a claimed job always names a registered worker
        if resend_queued:
            for job_id in self.store.queued_ids():
                self.actor.send(job_id)
        self._worker = dramatiq.Worker(self.broker, queues={QUEUE}, worker_threads=self.worker_threads)
        self._worker.start()

    def stop_workers(self, *, timeout_ms: int = 30_000) -> None:
        """Stop taking work; the job in progress finishes (or is left to reconcile after timeout).
        Then leave the registry: what is still running here is interrupted by our exit."""
        if self._worker is not None:
            self._worker.stop(timeout=timeout_ms)
            self._worker = None
            self.registry.stop()
        self.broker.close()

    # ------------------------------------------------------------------- run

    def running_ids(self) -> frozenset[str]:
        with self._running_lock:
            return frozenset(self._running)

    def resend_stale(self, *, older_than: timedelta = STALE_QUEUED) -> list[str]:
        """Send again the jobs queued for long without a worker taking them: their message was lost
        (Redis restarted without its data, or flushed). The claim makes a duplicate harmless."""
        stale = self.store.queued_ids(older_than=older_than)
        for job_id in stale:
            self.actor.send(job_id)
        return stale

    def sweep_orphans(self) -> list[str]:
        """Fail the jobs marked running whose worker is dead (stale heartbeat, a process on this host
        that is gone, or no worker recorded), then drop the rows of dead workers with nothing left
        to settle. Never a job of a worker that heartbeats, nor one of this process."""
        interrupted = self.store.fail_interrupted(alive=self.registry.live_ids, keep=self.running_ids())
        gone = self.registry.remove_dead()
        if gone:
            log.info("%d dead worker(s) removed from the registry", len(gone))
        return interrupted

    def _run(self, job_id: str) -> None:
        with self._running_lock:
            self._running.add(job_id)
        try:
            self._run_claimed(job_id)
        finally:
            with self._running_lock:
                self._running.discard(job_id)

    def _run_claimed(self, job_id: str) -> None:
        job = self.store.claim(job_id, worker_id=self.registry.id)
        if job is None:
            return  # already run (duplicate delivery) or finished

        def progress(message: str) -> None:
            # A progress line is not worth failing the operation for.
            with contextlib.suppress(DatabaseError):
                self.store.progress(job_id, message)

        kind = job["kind"]
        about = {"job_id": job_id, "kind": kind, "actor": job["actor"]}
        log.info("job %s (%s) started", job_id, kind, extra=about)
        started = time.monotonic()
        context = JobContext(services=self.services, actor=job["actor"], progress=progress)
        outcome: dict[str, Any]
        try:
            job_kind = self.kinds.get(kind)
            # While the job runs, its thread counts as alive up to the kind's timeout; past it, hung.
            timeout = job_kind.timeout_seconds or self.services.settings.longest_vm_operation_seconds
            with self.heartbeats.busy(
                _beat_name(threading.current_thread()),
                role="worker",
                what=f"job {job_id} ({kind})",
                timeout=timeout,
            ):
                outcome = {"result": job_kind.run(context, job["params"])}
        except HubError as exc:
            outcome = {"error": str(exc)}
            self.abnormal_end.set()
        except Exception as exc:  # a bug: keep the traceback in the log, the message in the job
            log.exception("job %s (%s) crashed", job_id, kind, extra=about)
            outcome = {
                "error": f"internal error: {type(exc).__name__}: {exc}",
                "audit_details": {"error": f"internal error: {type(exc).__name__}"},
            }
            self.abnormal_end.set()
        seconds = time.monotonic() - started
        timing = {**about, "duration_s": round(seconds, 3)}
        if "error" in outcome:
            log.warning("job %s (%s) failed: %s", job_id, kind, outcome["error"], extra=timing)
        else:
            log.info("job %s (%s) succeeded", job_id, kind, extra=timing)
        if self.observer is not None:
            result = outcome.get("result")
            self.observer.on_job_end(
                kind,
                outcome="failed" if "error" in outcome else "succeeded",
                seconds=seconds,
                result=cast(dict[str, Any], result) if isinstance(result, dict) else None,
            )
        try:
            retry_write(lambda: self.store.finish(job_id, **outcome))
        except DatabaseError as exc:
            # Still running in the database; the service's sweep settles it once the database is back.
            log.error("job %s (%s): its outcome could not be written: %s", job_id, kind, exc, extra=about)
            self.abnormal_end.set()
