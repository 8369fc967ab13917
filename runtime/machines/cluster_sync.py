"""Cluster sync: one pass over ``/cluster/resources`` makes the machine rows agree with Proxmox.

One request lists every VM with its node, status, uptime, CPU and sizes, so the cost of a pass grows
with the number of VMs and never costs a request per machine. For each machine that holds a VM:

- the VM is gone: the row becomes ``missing`` (audited ``machine.vanished``); its capacity is freed;
- the VM is no longer the machine's (its tag was removed outside the Hub): recorded the same way, and
  the Hub stops acting on it;
- its power state changed outside the Hub (stopped, started): the row follows (audited
  ``machine.changed``); so do cores and memory resized outside the Hub;
- resource use is sampled: CPU into the metrics and the row; running time (from ``uptime``) into
  the machine's and its project's cost (runtime.machines.budget);
- idle: CPU below ``HUB_IDLE_CPU_THRESHOLD`` for ``HUB_IDLE_SECONDS`` flags the machine (audited once);
  with ``HUB_IDLE_STOP`` it is stopped.

Then budgets: a project whose spending reached its budget is warned (log and audit) and, once
``HUB_BUDGET_GRACE_SECONDS`` have passed, its running machines are stopped (each stop audited).
A ``creating`` row older than any create can take (a process killed mid-create and never re-run)
becomes ``failed``, so it leaves a state no process would move it out of; its capacity stays held
until it is destroyed or its create is run again.

One bad machine never stops the rest: each is settled on its own, errors collected in the report.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, runtime_checkable

from sqlalchemy import select

from hubcore.proxmox import ProxmoxError, VmResource
from runtime import audit
from runtime.db.models import Machine, Project
from runtime.errors import HubError
from runtime.machines.budget import Rates, accrued, running_seconds
from runtime.machines.records import HOLDING, MACHINE_TAG, MachineStatus, project_tag
from runtime.wiring import Services

log = logging.getLogger(__name__)


@runtime_checkable
class SyncObserver(Protocol):
    """Told each machine's sample (runtime.metrics implements it); must not raise."""

    def on_machine_sample(
        self, *, machine: str, project: str, cpu: float, running: bool, cost: float
    ) -> None: ...


@dataclass
class SyncReport:
    seen: int = 0
    changed: list[dict[str, Any]] = field(default_factory=lambda: list[dict[str, Any]]())
    vanished: list[str] = field(default_factory=lambda: list[str]())
    idle: list[str] = field(default_factory=lambda: list[str]())
    stopped: list[str] = field(default_factory=lambda: list[str]())
    warned: list[str] = field(default_factory=lambda: list[str]())
    errors: list[str] = field(default_factory=lambda: list[str]())

    def to_public(self) -> dict[str, Any]:
        return {
            "seen": self.seen,
            "changed": self.changed,
            "vanished": self.vanished,
            "idle": self.idle,
            "stopped": self.stopped,
            "warned": self.warned,
            "errors": self.errors,
        }


def sync_machines(
    services: Services,
    *,
    actor: str = "hub:sync",
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    observer: object | None = None,
) -> SyncReport:
    """One pass (called from the service's periodic loop, and by ``hubctl machine sync``).

    ``observer``: anything with ``on_machine_sample`` (``SyncObserver``; the service passes its
    metrics, which it also gave the Proxmox client); anything else is ignored."""
    sample = observer if isinstance(observer, SyncObserver) else None
    settings = services.settings
    db = services.ready_db()
    report = SyncReport()
    with db.session() as s:
        if s.scalar(select(Machine.uuid).where(Machine.status.in_(HOLDING)).limit(1)) is None:
            return report  # no machines: not even the one request
    cluster = {vm.vmid: vm for vm in services.proxmox.cluster_vms()}
    now = clock()
    rates = Rates.of(settings)
    to_stop: list[tuple[str, str]] = []
    with db.session() as s:
        rows = list(s.scalars(select(Machine).where(Machine.status.in_(HOLDING))))
        report.seen = len(rows)
        for row in rows:
            try:
                _settle(
                    row,
                    cluster.get(row.vm_id) if row.vm_id is not None else None,
                    s=s,
                    now=now,
                    rates=rates,
                    settings=settings,
                    report=report,
                    actor=actor,
                    to_stop=to_stop,
                )
            except Exception as exc:  # one bad row never stops the rest
                report.errors.append(f"machine {row.name}: {exc}")
            if sample is not None:
                sample.on_machine_sample(
                    machine=row.name,
                    project=row.project,
                    cpu=row.cpu,
                    running=row.status == MachineStatus.RUNNING.value,
                    cost=row.cost,
                )
        _budgets(s, now=now, settings=settings, report=report, actor=actor, to_stop=to_stop)
    if to_stop:
        _stop_all(services, to_stop, report=report, actor=actor)
    return report


def _settle(
    row: Machine,
    vm: VmResource | None,
    *,
    s: Any,
    now: datetime,
    rates: Rates,
    settings: Any,
    report: SyncReport,
    actor: str,
    to_stop: list[tuple[str, str]],
) -> None:
    if row.status == MachineStatus.CREATING.value:
        if now - row.updated_at > timedelta(seconds=3 * settings.longest_vm_operation_seconds):
            row.status = MachineStatus.FAILED.value
            row.error = (
                f"create interrupted at step {row.step}; run the create again with --name {row.name} "
                "or destroy it"
            )
            row.updated_at = now
            audit.record(
                s,
                actor=actor,
                action="machine.create",
                target=row.uuid,
                outcome="failed",
                details={"step": row.step, "error": row.error},
            )
        return
    if row.vm_id is None:
        return
    ours = vm is not None and MACHINE_TAG in vm.tags and project_tag(row.project) in vm.tags
    if vm is None or (not ours and row.status != MachineStatus.FAILED.value):
        why = "the VM is gone" if vm is None else "the VM no longer carries the Hub's tags"
        row.status = MachineStatus.MISSING.value
        row.error = f"{why} (noticed by cluster sync at {now.isoformat()})"
        row.updated_at = now
        report.vanished.append(row.name)
        audit.record(
            s,
            actor=actor,
            action="machine.vanished",
            target=row.uuid,
            outcome="completed",
            details={"vm_id": row.vm_id, "why": why},
        )
        log.warning("machine %s (VM %s): %s", row.name, row.vm_id, why)
        return
    # Accounting first, from the previous sample to this one.
    wall = (
        (now - row.sampled_at).total_seconds() if row.sampled_at else (now - row.created_at).total_seconds()
    )
    ran = running_seconds(
        previous_uptime=row.last_uptime,
        uptime=vm.uptime if vm.status == "running" else 0,
        wall_seconds=max(0.0, wall),
    )
    cost = accrued(
        rates,
        cores=row.cores,
        memory_mib=row.memory_mib,
        disk_gb=row.disk_gb,
        ran_seconds=ran,
        existed_seconds=max(0.0, wall),
    )
    row.cost = float(row.cost or 0.0) + cost
    project = s.get(Project, row.project)
    if project is not None:
        project.spent = float(project.spent or 0.0) + cost
    row.last_uptime = vm.uptime if vm.status == "running" else 0
    row.sampled_at = now
    row.node = vm.node
    cores = vm.maxcpu or row.cores
    row.cpu = float(vm.cpu)
    # State changed outside the Hub?
    live = {"running": MachineStatus.RUNNING.value, "stopped": MachineStatus.STOPPED.value}.get(vm.status)
    changes: dict[str, Any] = {}
    if (
        live is not None
        and row.status in (MachineStatus.RUNNING.value, MachineStatus.STOPPED.value)
        and live != row.status
    ):
        changes["status"] = [row.status, live]
        row.status = live
    if vm.maxcpu and vm.maxcpu != row.cores:
        changes["cores"] = [row.cores, vm.maxcpu]
        row.cores = vm.maxcpu
    if vm.maxmem and vm.maxmem // (1024 * 1024) != row.memory_mib:
        changes["memory_mib"] = [row.memory_mib, vm.maxmem // (1024 * 1024)]
        row.memory_mib = vm.maxmem // (1024 * 1024)
    if changes:
        row.updated_at = now
        report.changed.append({"machine": row.name, **changes})
        audit.record(
            s,
            actor=actor,
            action="machine.changed",
            target=row.uuid,
            outcome="completed",
            details={"vm_id": row.vm_id, "changes": changes, "by": "outside the Hub"},
        )
    # Idle detection (CPU is a fraction of all the VM's cores, as PVE reports it).
    if row.status == MachineStatus.RUNNING.value and cores:
        if vm.cpu < settings.idle_cpu_threshold:
            since = row.idle_since or now
            row.idle_since = since
            if not row.idle and (now - since).total_seconds() >= settings.idle_seconds:
                row.idle = True
                report.idle.append(row.name)
                audit.record(
                    s,
                    actor=actor,
                    action="machine.idle",
                    target=row.uuid,
                    outcome="completed",
                    details={"vm_id": row.vm_id, "cpu": vm.cpu, "since": since.isoformat()},
                )
            if row.idle and settings.idle_stop:
                to_stop.append((row.uuid, "idle"))
        else:
            row.idle_since = None
            row.idle = False


def _budgets(
    s: Any, *, now: datetime, settings: Any, report: SyncReport, actor: str, to_stop: list[tuple[str, str]]
) -> None:
    for project in s.scalars(select(Project).where(Project.budget.is_not(None))):
        if project.spent < project.budget:
            project.over_budget_since = None
            continue
        if project.over_budget_since is None:
            project.over_budget_since = now
            report.warned.append(project.name)
            message = (
                f"project {project.name} spent {project.spent:.2f} of its budget {project.budget:g}: "
                f"its running machines are stopped in {settings.budget_grace_seconds:.0f} s"
            )
            log.warning(message)
            audit.record(
                s,
                actor=actor,
                action="budget.exceeded",
                target=project.name,
                outcome="warned",
                details={
                    "spent": project.spent,
                    "budget": project.budget,
                    "grace_seconds": settings.budget_grace_seconds,
                },
            )
            continue
        if (now - project.over_budget_since).total_seconds() >= settings.budget_grace_seconds:
            for m in s.scalars(
                select(Machine).where(
                    Machine.project == project.name, Machine.status == MachineStatus.RUNNING.value
                )
            ):
                to_stop.append((m.uuid, f"budget of project {project.name} exceeded"))


def _stop_all(services: Services, to_stop: list[tuple[str, str]], *, report: SyncReport, actor: str) -> None:
    from runtime.machines.lifecycle import MachineService

    svc = MachineService.build_from(services, actor=actor)
    for uuid, why in dict(to_stop).items():
        try:
            done = svc.stop(uuid, why=why)
            report.stopped.append(done.name)
        except (HubError, ProxmoxError) as exc:
            report.errors.append(f"stop {uuid}: {exc}")
