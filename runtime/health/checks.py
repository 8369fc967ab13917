"""The health checks: one instantaneous evaluation of the Hub, what ``hubctl health`` prints.

Each check is ``healthy``, ``degraded`` or ``critical`` with a detail line; the evaluation's status
is the worst of them. Critical means the Hub cannot do its job (no database, no Proxmox or no quorum,
its VM not running, a full disk or exhausted memory, every job worker dead or hung, every recent job
failing); degraded means it can but something needs attention (no recent checkpoint where one is
scheduled, a checkpoint stuck mid-protocol, headroom running low, a silent scheduler, one hung
worker). Thresholds are settings (``HUB_HEALTH_*``). The threshold logic is pure functions of
their inputs (``disk_check``, ``memory_check``, ``liveness_checks``, ...), so each threshold is
tested without filling a disk.

This is one evaluation; the service's loop (``runtime/health/loop.py``) smooths a series of them
into the settled verdict the sentinel acts on.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select

from runtime.checkpoints import schedule
from runtime.checkpoints.records import CheckpointStatus
from runtime.db import Checkpoint, Job, JobState
from runtime.errors import HubError
from runtime.heartbeats import Beat
from runtime.jobs.workers import WorkerCensus, census
from runtime.settings import Settings
from runtime.wiring import Services

if TYPE_CHECKING:
    from hubcore.proxmox.vms import VmStatus

ORDER = {"healthy": 0, "degraded": 1, "critical": 2}
MEMINFO = Path("/proc/meminfo")


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    detail: str

    def to_public(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def worst(statuses: Sequence[str]) -> str:
    return max(statuses, key=ORDER.__getitem__, default="healthy")


def _guard(name: str, probe: Callable[[], Check]) -> Check:
    try:
        return probe()
    except HubError as exc:
        return Check(name, "critical", str(exc))


def evaluate(services: Services, *, now: datetime | None = None) -> dict[str, Any]:
    """Every check, now. ``{"status", "checks": [{"name", "status", "detail"}], "at"}``."""
    now = now or datetime.now(UTC)
    settings = services.settings
    checks = [_guard("database", lambda: _database(services))]
    if checks[0].status != "critical":
        checks.append(_guard("checkpoints", lambda: _checkpoints(services, now)))
        checks.append(_guard("jobs", lambda: _job_failures(services, now)))
    if settings.redis_url:
        checks.append(_guard("redis", lambda: _redis(services)))
    if not settings.proxmox_configured:
        missing = "HUB_PROXMOX_URL" if settings.proxmox_url is None else "HUB_PROXMOX_API_TOKEN"
        checks.append(Check("proxmox", "critical", f"{missing} is not set"))
    else:
        checks.append(_guard("proxmox", lambda: _proxmox(services)))
        if checks[-1].status != "critical":
            checks += _hub_vm(services)
    checks.append(_local("disk", lambda: disk_check(_disk_path(settings), settings)))
    checks.append(_local("memory", lambda: memory_check(MEMINFO.read_text(), settings)))
    registry = None
    if checks[0].status != "critical":
        try:
            registry = worker_registry(services)
        except HubError:  # said by the database check; the in-process threads are still judged
            registry = None
    checks += liveness_checks(services.heartbeats.snapshot(), now=now.timestamp(), registry=registry)
    return {
        "status": worst([c.status for c in checks]),
        "checks": [c.to_public() for c in checks],
        "at": now.isoformat(),
    }


# ------------------------------------------------------------------ database


def _database(services: Services) -> Check:
    current = services.db.current_revision()
    head = services.db.head_revision()
    from sqlalchemy.engine import make_url

    # Which database: the default one is per user, so say it (password hidden).
    where = make_url(services.settings.database_url).render_as_string(hide_password=True)
    if current != head:
        at = f"schema at {current}" if current else "empty database"
        return Check("database", "critical", f"{at}, code expects {head}: run hubctl db upgrade ({where})")
    return Check("database", "healthy", f"reachable, schema {current} ({where})")


def _checkpoints(services: Services, now: datetime) -> Check:
    with services.db.session() as s:
        stuck = s.scalar(
            select(func.count())
            .select_from(Checkpoint)
            .where(
                Checkpoint.status == CheckpointStatus.CREATING.value,
                # Longer than any checkpoint can take under the configured bounds: its process died
                # (the service's periodic reconcile settles it; so does `hubctl reconcile`).
                Checkpoint.created_at
                < now - timedelta(seconds=services.settings.longest_vm_operation_seconds),
            )
        )
        last = s.scalar(
            select(func.max(Checkpoint.completed_at)).where(
                Checkpoint.status == CheckpointStatus.COMPLETED.value
            )
        )
    if stuck:
        return Check(
            "checkpoints", "degraded", f"{stuck} checkpoint(s) stuck in 'creating': run hubctl reconcile"
        )
    trigger = schedule.trigger_for(services.settings)
    if trigger is None:
        return Check("checkpoints", "healthy", f"manual schedule; last completed {_ago(last, now)}")
    if last is None:
        return Check("checkpoints", "degraded", "scheduled checkpoints, but none has completed yet")
    due = schedule.next_fire(services.settings, after=last)
    # One missed fire time (plus an hour of slack for the checkpoint itself) is degraded.
    if due is not None and now > due + timedelta(hours=1):
        return Check(
            "checkpoints", "degraded", f"last completed {_ago(last, now)}; one was due at {due.isoformat()}"
        )
    return Check("checkpoints", "healthy", f"last completed {_ago(last, now)}")


def _job_failures(services: Services, now: datetime) -> Check:
    window = services.settings.health_failure_window_seconds
    with services.db.session() as s:
        rows = s.execute(
            select(Job.state, func.count())
            .where(
                Job.finished_at >= now - timedelta(seconds=window),
                Job.state.in_((JobState.SUCCEEDED.value, JobState.FAILED.value)),
            )
            .group_by(Job.state)
        ).all()
    counts = {str(state): int(n) for state, n in rows}
    return failure_rate_check(
        failed=counts.get(JobState.FAILED.value, 0),
        succeeded=counts.get(JobState.SUCCEEDED.value, 0),
        settings=services.settings,
    )


def failure_rate_check(*, failed: int, succeeded: int, settings: Settings) -> Check:
    """The share of jobs that failed among those that ended in the window; too few is no signal."""
    total = failed + succeeded
    span = f"in the last {_span(settings.health_failure_window_seconds)}"
    if total < settings.health_failure_min_jobs:
        return Check("jobs", "healthy", f"{failed} of {total} job(s) failed {span} (too few to judge)")
    rate = 100.0 * failed / total
    detail = f"{failed} of {total} job(s) failed {span} ({rate:.0f}%)"
    if rate >= settings.health_failure_critical_percent:
        return Check("jobs", "critical", detail)
    if rate >= settings.health_failure_degraded_percent:
        return Check("jobs", "degraded", detail)
    return Check("jobs", "healthy", detail)


# --------------------------------------------------------------------- redis


def _redis(services: Services) -> Check:
    import redis
    from redis.exceptions import RedisError

    from runtime.locks import held_since
    from runtime.redis_lock import RedisLocks

    assert services.settings.redis_url is not None
    try:
        client = redis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
            services.settings.redis_url, socket_connect_timeout=3, socket_timeout=3
        )
        client.ping()  # pyright: ignore[reportUnknownMemberType]
        locks = services.locks
        holders = locks.holders() if isinstance(locks, RedisLocks) else []
    except RedisError as exc:
        return Check("redis", "critical", f"unreachable: {exc}")
    # A lock held longer than any operation can take is stale (its release was lost): say so, since
    # every operation on that VM is refused until it goes.
    limit = services.settings.longest_vm_operation_seconds
    now = datetime.now(UTC).timestamp()
    stale = [
        f"{name} held for {now - since:.0f}s by {token.rsplit(':', 1)[0]}"
        for name, token in holders
        if (since := held_since(token)) is not None and now - since > limit
    ]
    if stale:
        return Check(
            "redis", "degraded", f"reachable; lock held longer than an operation can take: {stale[0]}"
        )
    return Check("redis", "healthy", f"reachable; {len(holders)} lock(s) held")


# ------------------------------------------------------------------- proxmox


def _proxmox(services: Services) -> Check:
    from hubcore.proxmox import ProxmoxError
    from hubcore.proxmox.errors import ProxmoxPermissionError

    version = services.proxmox.version()
    reachable = f"API reachable, PVE {version.get('version', '?')}"
    try:
        quorate = services.proxmox.cluster_quorate()
    except ProxmoxPermissionError:
        # The Hub's least-privilege token has nothing on `/` (hubinfra/privileges.py); a lost quorum
        # then shows as refused writes (ProxmoxQuorumError) in the operations themselves.
        return Check("proxmox", "healthy", f"{reachable}; quorum not visible (no Sys.Audit on /)")
    except ProxmoxError as exc:
        return Check("proxmox", "degraded", f"{reachable}; cluster status unreadable: {exc}")
    return proxmox_check(reachable, quorate)


def proxmox_check(reachable: str, quorate: bool | None) -> Check:
    if quorate is None:
        return Check("proxmox", "healthy", f"{reachable}; standalone node")
    if not quorate:
        # pmxcfs is read-only without quorum: no snapshot, rollback or config change can succeed.
        return Check("proxmox", "critical", f"{reachable}; the cluster has NO quorum (/etc/pve read-only)")
    return Check("proxmox", "healthy", f"{reachable}; cluster quorate")


def _hub_vm(services: Services) -> list[Check]:
    vm = services.vms.locate(services.settings.hub_vmid())
    status = services.proxmox.vm_status(vm)
    return [hub_vm_check(status), vm_usage_check(status, services.settings)]


def hub_vm_check(status: VmStatus) -> Check:
    if status.status != "running":
        return Check("hub_vm", "critical", f"VM {status.vmid} is {status.status}")
    if status.qmpstatus not in (None, "running"):
        return Check("hub_vm", "critical", f"VM {status.vmid} is {status.qmpstatus}")
    if status.lock:
        return Check("hub_vm", "degraded", f"VM {status.vmid} running, locked ({status.lock})")
    return Check("hub_vm", "healthy", f"VM {status.vmid} running on {status.node}")


def vm_usage_check(status: VmStatus, settings: Settings) -> Check:
    """The VM's memory and disk as Proxmox reports them (``status/current``). PVE's ``mem`` for a VM
    with a balloon driver is total minus free (qemu-server ``PVE/QemuServer.pm`` vmstatus), page cache
    included, so memory is only ever a warning; ``disk`` is reported only when the guest tells it."""
    parts: list[str] = []
    result = "healthy"
    if status.maxmem > 0:
        pct = 100.0 * status.mem / status.maxmem
        parts.append(f"memory {pct:.0f}% of {_bytes(status.maxmem)}")
        if pct >= settings.health_vm_memory_degraded_percent:
            result = "degraded"
    if status.maxdisk > 0 and status.disk > 0:
        pct = 100.0 * status.disk / status.maxdisk
        parts.append(f"disk {pct:.0f}% of {_bytes(status.maxdisk)}")
        result = worst(
            [
                result,
                _level(pct, settings.health_disk_degraded_percent, settings.health_disk_critical_percent),
            ]
        )
    else:
        parts.append("disk use not reported")
    return Check("hub_vm_usage", result, "as Proxmox reports it: " + ", ".join(parts))


# ------------------------------------------------------------ inside the VM


def _local(name: str, probe: Callable[[], Check]) -> Check:
    try:
        return probe()
    except (OSError, ValueError) as exc:
        return Check(name, "degraded", f"cannot measure: {exc}")


def _disk_path(settings: Settings) -> Path:
    if settings.health_disk_path is not None:
        return settings.health_disk_path
    from sqlalchemy.engine import make_url

    url = make_url(settings.database_url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).resolve().parent
    return Path("/")


def disk_check(path: Path, settings: Settings, *, usage: tuple[int, int, int] | None = None) -> Check:
    """Used space of ``path``'s filesystem as ``df`` counts it (what is not available to us is used).
    ``usage`` is ``shutil.disk_usage``'s (total, used, free), measured when not given."""
    total, _used, free = usage if usage is not None else shutil.disk_usage(path)
    if total <= 0:
        return Check("disk", "degraded", f"{path}: filesystem reports no size")
    pct = 100.0 * (total - free) / total
    detail = f"{path}: {pct:.0f}% used, {_bytes(free)} free of {_bytes(total)}"
    return Check(
        "disk",
        _level(pct, settings.health_disk_degraded_percent, settings.health_disk_critical_percent),
        detail,
    )


def memory_check(meminfo: str, settings: Settings) -> Check:
    """Memory in use inside the VM: 100 - MemAvailable/MemTotal (the kernel's estimate of what can be
    had without swapping, page cache excluded), from ``/proc/meminfo``'s text."""
    fields: dict[str, int] = {}
    for line in meminfo.splitlines():
        key, _, rest = line.partition(":")
        value = rest.split()
        if value and value[0].isdigit():
            fields[key.strip()] = int(value[0]) * 1024  # kB
    total, available = fields.get("MemTotal"), fields.get("MemAvailable")
    if not total or available is None:
        return Check("memory", "degraded", "cannot measure: no MemTotal/MemAvailable in /proc/meminfo")
    pct = 100.0 * (total - available) / total
    detail = f"{pct:.0f}% used, {_bytes(available)} available of {_bytes(total)}"
    return Check(
        "memory",
        _level(pct, settings.health_memory_degraded_percent, settings.health_memory_critical_percent),
        detail,
    )


# ---------------------------------------------------------------- liveness

# A scheduler beat older than this many promised intervals means the scheduler stopped.
STALE_BEATS = 3


@dataclass(frozen=True, slots=True)
class RegistryView:
    """The worker registry (every job-running process, on any host) and the jobs waiting for one."""

    census: WorkerCensus
    queued: int


def worker_registry(services: Services) -> RegistryView:
    with services.db.session() as s:
        queued = s.scalar(select(func.count()).select_from(Job).where(Job.state == JobState.QUEUED.value))
    return RegistryView(
        census=census(services.db, stale_after=services.settings.worker_stale_seconds),
        queued=int(queued or 0),
    )


def liveness_checks(
    beats: Sequence[Beat], *, now: float, registry: RegistryView | None = None
) -> list[Check]:
    """``scheduler`` from this process's heartbeats; ``workers`` from this process's worker threads
    (dead or hung) and the worker registry (live processes anywhere: ``hubctl worker``, other
    ``serve``). A party that never registered (the CLI's own process, a manual schedule) has no check;
    no worker ever registered and nothing queued is no check either."""
    checks: list[Check] = []
    schedulers = [b for b in beats if b.role == "scheduler"]
    if schedulers:
        silent = [b for b in schedulers if b.every is not None and now - b.last > STALE_BEATS * b.every]
        if silent:
            b = silent[0]
            checks.append(
                Check("scheduler", "degraded", f"silent for {now - b.last:.0f}s (beats every {b.every:g}s)")
            )
        else:
            checks.append(Check("scheduler", "healthy", f"beat {max(now - schedulers[0].last, 0):.0f}s ago"))
    workers = [b for b in beats if b.role == "worker"]
    check = _workers_check(workers, now=now, registry=registry)
    if check is not None:
        checks.append(check)
    return checks


def _workers_check(workers: Sequence[Beat], *, now: float, registry: RegistryView | None) -> Check | None:
    # Another live process can run the jobs this one's hung threads cannot: then it is not critical.
    elsewhere = [w for w in registry.census.live if not w.here] if registry is not None else []
    local = _local_workers(workers, now=now, others_live=bool(elsewhere)) if workers else None
    if registry is None:
        return local
    reg, queued = registry.census, registry.queued
    roles = sorted({w.role for w in reg.live})
    line = (
        f"{len(reg.live)} live worker process(es) of {reg.registered} registered"
        + (f" ({', '.join(roles)})" if roles else "")
        + f", {queued} job(s) queued"
    )
    if local is not None:
        return Check("workers", local.status, f"{local.detail}; {line}")
    if reg.live:
        return Check("workers", "healthy", line)
    if queued:
        return Check("workers", "critical", f"no live worker to run the queued jobs: {line}")
    if reg.registered:
        return Check("workers", "degraded", f"no live worker (the next job will wait): {line}")
    return None


def _local_workers(workers: Sequence[Beat], *, now: float, others_live: bool) -> Check:
    """This process's worker threads: dead or hung (past their job's deadline) ones are counted."""
    dead = [b for b in workers if b.thread_alive is False]
    hung = [b for b in workers if b.thread_alive is not False and b.deadline is not None and now > b.deadline]
    busy = [b for b in workers if b.busy_with is not None]
    bad = len(dead) + len(hung)
    parts = [f"{len(workers)} thread(s), {len(busy)} busy"]
    parts += [f"{b.name} died" for b in dead]
    parts += [
        f"{b.name} hung: {b.busy_with} running {now - b.last:.0f}s, past its {b.deadline - b.last:.0f}s bound"
        for b in hung
        if b.deadline is not None
    ]
    if bad and bad == len(workers):
        status = "degraded" if others_live else "critical"
    else:
        status = "degraded" if bad else "healthy"
    return Check("workers", status, "; ".join(parts))


# ------------------------------------------------------------------ helpers


def _level(pct: float, degraded: float, critical: float) -> str:
    return "critical" if pct >= critical else "degraded" if pct >= degraded else "healthy"


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _span(seconds: float) -> str:
    return (
        f"{seconds / 3600:g}h"
        if seconds >= 3600
        else f"{seconds / 60:g}min"
        if seconds >= 60
        else f"{seconds:g}s"
    )


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    minutes = int((now - when).total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m ago" if minutes >= 60 else f"{minutes}m ago"
