"""Prometheus metrics, and the health loop's latest document.

The health loop (``runtime/health/loop.py``) evaluates health every interval and publishes the
document here; the API serves the stored one, so a scrape or a sentinel probe never waits on Proxmox.

``Metrics`` is also the service's observer of what happens below it: jobs (``JobObserver``, told by
the queue), Proxmox requests and retries (``ProxmoxObserver``, told by hubcore's client, which knows
nothing of Prometheus) and lock waits (``LockObserver``). Each observation is also a log line where
an operator would want one: every retry, every lock wait that took noticeable time, every refusal.
Checkpoint durations are read from the job results the queue hands over, so the checkpoint domain
stays unaware of metrics.

Retention deletions are counted from the audit trail, not from job results: a deletion and its
``checkpoint.delete`` audit entry (``why: retention: ...``) are one transaction, whichever path
pruned (a prune job, the prune inside every checkpoint create job, a prune that failed half-way, a
``hubctl checkpoint prune`` run beside the service). The counter is the number of such entries since
this process started, brought up to date on every scrape and every health refresh; the audit table is
append-only, so the count never goes down, and an entry committed late is counted at the next scrape.

Every family is listed in ``FAMILIES``; the Grafana dashboard and the alert rules in ``deploy/`` use
only these names (``tests/deploy/test_observability_files.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from sqlalchemy import func, select

from hubcore.proxmox.errors import ProxmoxError
from runtime.db import AuditEntry, Checkpoint, Database
from runtime.errors import HubError
from runtime.health import ORDER, history
from runtime.health.history import max_gap
from runtime.health.loop import one_shot
from runtime.wiring import Services

log = logging.getLogger("hub.metrics")
# Job and checkpoint durations: a snapshot without RAM state takes seconds, one with a large RAM state
# minutes; a task is bounded by task_timeout_seconds (10 min by default).
JOB_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
REQUEST_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 15, 60)
LOCK_BUCKETS = (0.01, 0.1, 0.5, 1, 5, 15, 30, 60, 120)
# A lock wait shorter than this is not worth a log line (an uncontended flock takes microseconds).
NOTABLE_LOCK_WAIT = 1.0


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.health = Gauge(
            "hub_health_status",
            "Overall settled health (after hysteresis): 0 healthy, 1 degraded, 2 critical",
            registry=self.registry,
        )
        self.check = Gauge(
            "hub_health_check_status", "Per-check health (0/1/2)", ["check"], registry=self.registry
        )
        self.instant = Gauge(
            "hub_health_instant_status",
            "Overall health of the latest evaluation, before hysteresis (0/1/2)",
            registry=self.registry,
        )
        self.check_settled = Gauge(
            "hub_health_check_settled_status",
            "Per-check health after hysteresis (0/1/2)",
            ["check"],
            registry=self.registry,
        )
        self.checkpoints = Gauge(
            "hub_checkpoints", "Checkpoints by status", ["status"], registry=self.registry
        )
        self.last_completed = Gauge(
            "hub_last_checkpoint_completed_timestamp_seconds",
            "When the newest completed checkpoint finished",
            registry=self.registry,
        )
        self.jobs = Counter(
            "hub_jobs",
            "Jobs that ran to an end, by kind and outcome",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.job_duration = Histogram(
            "hub_job_duration_seconds",
            "How long a job ran",
            ["kind"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.checkpoint_duration = Histogram(
            "hub_checkpoint_duration_seconds",
            "Checkpoint creation, from the row's creation to its completion, by checkpoint kind and status",
            ["kind", "status"],
            buckets=JOB_BUCKETS,
            registry=self.registry,
        )
        self.retention_deletions = Counter(
            "hub_retention_deletions", "Checkpoints deleted by the retention policy", registry=self.registry
        )
        self.proxmox_requests = Counter(
            "hub_proxmox_requests",
            "Proxmox API request attempts by client call and outcome (ok or error)",
            ["kind", "outcome"],
            registry=self.registry,
        )
        self.proxmox_latency = Histogram(
            "hub_proxmox_request_duration_seconds",
            "Proxmox API request latency by client call",
            ["kind"],
            buckets=REQUEST_BUCKETS,
            registry=self.registry,
        )
        self.proxmox_errors = Counter(
            "hub_proxmox_errors",
            "Proxmox API errors by client call and error class",
            ["kind", "error"],
            registry=self.registry,
        )
        self.proxmox_retries = Counter(
            "hub_proxmox_retries",
            "Proxmox API calls retried, by client call and the error that caused the retry",
            ["kind", "error"],
            registry=self.registry,
        )
        self.lock_wait = Histogram(
            "hub_lock_wait_seconds",
            "Time spent waiting for a VM lock",
            buckets=LOCK_BUCKETS,
            registry=self.registry,
        )
        self.lock_refusals = Counter(
            "hub_lock_refusals",
            "VM lock acquisitions refused (busy: another holder past the wait; backend: Redis down)",
            ["reason"],
            registry=self.registry,
        )
        self.machine_cpu = Gauge(
            "hub_machine_cpu_ratio",
            "A task machine's CPU use (fraction of its cores), sampled by cluster sync",
            ["machine", "project"],
            registry=self.registry,
        )
        self.machine_running = Gauge(
            "hub_machine_running",
            "1 when the task machine runs",
            ["machine", "project"],
            registry=self.registry,
        )
        self.machine_cost = Gauge(
            "hub_machine_cost",
            "Cost accrued by a task machine so far",
            ["machine", "project"],
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._latest: dict[str, Any] | None = None
        # When this process's own health loop last published (monotonic); None: it runs no loop
        # (another process leads) or has not ticked yet.
        self._latest_at = 0.0
        self._loop_published: float | None = None
        self._shared: tuple[float, str | None] | None = None  # (monotonic read time, verdict)
        self._since = datetime.now(UTC)
        self._retention_counted = 0

    # ----------------------------------------------------------- observers

    def on_machine_sample(
        self, *, machine: str, project: str, cpu: float, running: bool, cost: float
    ) -> None:
        """runtime.machines.cluster_sync's observer: one sample per machine and pass."""
        self.machine_cpu.labels(machine=machine, project=project).set(cpu)
        self.machine_running.labels(machine=machine, project=project).set(1 if running else 0)
        self.machine_cost.labels(machine=machine, project=project).set(cost)

    def on_job_end(self, kind: str, *, outcome: str, seconds: float, result: dict[str, Any] | None) -> None:
        self.jobs.labels(kind=kind, outcome=outcome).inc()
        self.job_duration.labels(kind=kind).observe(seconds)
        if result is None:
            return
        if kind == "checkpoint.create":
            took = _checkpoint_seconds(result)
            self.checkpoint_duration.labels(
                kind=str(result.get("kind", "unknown")), status=str(result.get("status", "unknown"))
            ).observe(seconds if took is None else took)

    def count_retention_deletions(self, db: Database) -> None:
        """Bring ``hub_retention_deletions_total`` up to the audit trail's count since start (see the
        module's docstring). A database that cannot answer leaves the counter where it was."""
        query = (
            select(func.count())
            .select_from(AuditEntry)
            .where(
                AuditEntry.at >= self._since,
                AuditEntry.action == "checkpoint.delete",
                AuditEntry.outcome == "completed",
                AuditEntry.details["why"].as_string().like("retention%"),
            )
        )
        try:
            with db.session() as s:
                total = int(s.scalar(query) or 0)
        except Exception as exc:
            log.debug("retention deletions not counted now: %s", exc)
            return
        with self._lock:
            if total > self._retention_counted:
                self.retention_deletions.inc(total - self._retention_counted)
                self._retention_counted = total

    def on_request(self, kind: str, *, seconds: float, error: str | None) -> None:
        self.proxmox_requests.labels(kind=kind, outcome="ok" if error is None else "error").inc()
        self.proxmox_latency.labels(kind=kind).observe(seconds)
        if error is not None:
            self.proxmox_errors.labels(kind=kind, error=error).inc()

    def on_retry(self, kind: str, *, attempt: int, delay: float, error: ProxmoxError) -> None:
        self.proxmox_retries.labels(kind=kind, error=type(error).__name__).inc()
        log.warning(
            "Proxmox %s failed (attempt %d), retrying in %.1fs: %s",
            kind,
            attempt,
            delay,
            error,
            extra={"proxmox_call": kind, "attempt": attempt, "error": type(error).__name__},
        )

    def on_acquired(self, name: str, *, waited: float) -> None:
        self.lock_wait.observe(waited)
        if waited >= NOTABLE_LOCK_WAIT:
            log.info(
                "waited %.1fs for the lock %s",
                waited,
                name,
                extra={"lock": name, "waited_s": round(waited, 3)},
            )

    def on_refused(self, name: str, *, waited: float, reason: str) -> None:
        self.lock_wait.observe(waited)
        self.lock_refusals.labels(reason=reason).inc()
        log.warning(
            "the lock %s was refused (%s) after %.1fs",
            name,
            reason,
            waited,
            extra={"lock": name, "waited_s": round(waited, 3), "reason": reason},
        )

    def refresh(self, services: Services) -> dict[str, Any]:
        """One evaluation outside the health loop (before its first tick), published."""
        doc = one_shot(services)
        self.publish_health(services, doc, from_loop=False)
        return doc

    def publish_health(self, services: Services, doc: dict[str, Any], *, from_loop: bool = True) -> None:
        """The health loop's document (or a one-off evaluation's): served as it is, and exported as
        gauges. Never raises."""
        self.health.set(ORDER[doc["status"]])
        self.instant.set(ORDER[(doc.get("instant") or doc)["status"]])
        for check in doc["checks"]:
            self.check.labels(check=check["name"]).set(ORDER[check["status"]])
            self.check_settled.labels(check=check["name"]).set(ORDER[check.get("settled") or check["status"]])
        try:
            with services.db.session() as s:
                for status, count in s.execute(
                    select(Checkpoint.status, func.count()).group_by(Checkpoint.status)
                ):
                    self.checkpoints.labels(status=status).set(count)
                last = s.scalar(
                    select(func.max(Checkpoint.completed_at)).where(Checkpoint.status == "completed")
                )
            if last is not None:
                self.last_completed.set(last.timestamp())
        except Exception:
            pass
        self.count_retention_deletions(services.db)
        with self._lock:
            self._latest = doc
            self._latest_at = time.monotonic()
            if from_loop:
                self._loop_published = self._latest_at

    def _loop_is_here(self, services: Services) -> bool:
        with self._lock:
            published = self._loop_published
        return published is not None and time.monotonic() - published <= max_gap(services.settings)

    def latest_health(self, services: Services) -> dict[str, Any]:
        """The loop's document in the process that runs it. Any other process (a follower among
        several API processes) evaluates afresh when its copy is older than one interval: its
        ``settled`` part comes from the history the leader writes, so every process agrees."""
        if self._loop_is_here(services):
            with self._lock:
                doc = self._latest
            if doc is not None:
                return doc
        with self._lock:
            doc, at = self._latest, self._latest_at
        if doc is not None and time.monotonic() - at < services.settings.health_interval_seconds:
            return doc
        return self.refresh(services)

    def settled_status(self, services: Services) -> str | None:
        """The settled verdict, or None when there is none yet (before the first evaluation).

        In the process whose loop evaluates, its own; in any other (several API processes share one
        port, and the sentinel's probe lands on any of them), the leader's latest verdict from the
        health history, read at most once a second. A verdict older than the loop's longest gap is
        no verdict. A database that cannot be read is critical: the Hub cannot work without it."""
        if self._loop_is_here(services):
            with self._lock:
                return None if self._latest is None else str(self._latest["status"])
        now = time.monotonic()
        with self._lock:
            shared = self._shared
        if shared is not None and now - shared[0] < 1.0:
            return shared[1]
        try:
            sample = history.latest(services.db)
        except HubError:
            verdict: str | None = "critical"
        else:
            fresh = sample is not None and (datetime.now(UTC) - sample.at).total_seconds() <= max_gap(
                services.settings
            )
            verdict = sample.settled if fresh and sample is not None else None
        with self._lock:
            self._shared = (now, verdict)
        return verdict


def _checkpoint_seconds(result: dict[str, Any]) -> float | None:
    """From the checkpoint's own timestamps: the row is created before the lock is taken, so this
    includes a lock wait, as an operator waiting for the checkpoint experiences it."""
    try:
        created = datetime.fromisoformat(str(result["created_at"]))
        done = datetime.fromisoformat(str(result["completed_at"]))
    except (KeyError, TypeError, ValueError):
        return None
    return max((done - created).total_seconds(), 0.0)


# Every family the registry exposes (counters gain ``_total``, histograms ``_bucket``/``_sum``/``_count``).
FAMILIES = frozenset(metric.name for metric in Metrics().registry.collect())
