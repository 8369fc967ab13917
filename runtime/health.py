"""The Hub's health document: what ``hubctl health`` prints and the sentinel reads.

Each check is ``healthy``, ``degraded`` or ``critical``; the overall status is the worst of them.
Critical means the Hub cannot do its job (no database, no Proxmox, its VM not running); degraded
means it can but something needs attention (no recent checkpoint where one is scheduled, a
checkpoint stuck mid-protocol).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from runtime.checkpoints import schedule
from runtime.checkpoints.records import CheckpointStatus
from runtime.db import Checkpoint
from runtime.errors import HubError
from runtime.wiring import Services

ORDER = {"healthy": 0, "degraded": 1, "critical": 2}


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    status: str
    detail: str

    def to_public(self) -> dict[str, str]:
        return {"name": self.name, "status": self.status, "detail": self.detail}


def _guard(name: str, probe: Callable[[], Check]) -> Check:
    try:
        return probe()
    except HubError as exc:
        return Check(name, "critical", str(exc))


def evaluate(services: Services, *, now: datetime | None = None) -> dict[str, Any]:
    now = now or datetime.now(UTC)
    checks = [_guard("database", lambda: _database(services))]
    if checks[0].status != "critical":
        checks.append(_guard("checkpoints", lambda: _checkpoints(services, now)))
    if services.settings.redis_url:
        checks.append(_guard("redis", lambda: _redis(services)))
    if not services.settings.proxmox_configured:
        missing = "HUB_PROXMOX_URL" if services.settings.proxmox_url is None else "HUB_PROXMOX_API_TOKEN"
        checks.append(Check("proxmox", "critical", f"{missing} is not set"))
    else:
        checks.append(_guard("proxmox", lambda: _proxmox(services)))
        if checks[-1].status == "healthy":
            checks.append(_guard("hub_vm", lambda: _hub_vm(services)))
    worst = max((c.status for c in checks), key=ORDER.__getitem__)
    return {"status": worst, "checks": [c.to_public() for c in checks], "at": now.isoformat()}


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


def _proxmox(services: Services) -> Check:
    version = services.proxmox.version()
    return Check("proxmox", "healthy", f"API reachable, PVE {version.get('version', '?')}")


def _hub_vm(services: Services) -> Check:
    vm = services.vms.locate(services.settings.hub_vmid())
    status = services.proxmox.vm_status(vm)
    if status.status != "running":
        return Check("hub_vm", "critical", f"VM {vm.vmid} is {status.status}")
    if status.lock:
        return Check("hub_vm", "degraded", f"VM {vm.vmid} running, locked ({status.lock})")
    return Check("hub_vm", "healthy", f"VM {vm.vmid} running on {vm.node}")


def _ago(when: datetime | None, now: datetime) -> str:
    if when is None:
        return "never"
    minutes = int((now - when).total_seconds() // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m ago" if minutes >= 60 else f"{minutes}m ago"
