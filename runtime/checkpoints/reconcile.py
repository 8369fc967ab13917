"""Make the database and Proxmox agree about a VM's Hub checkpoints.

Proxmox's snapshot list is the truth for what exists; a snapshot's description ties it to its
checkpoint uuid (see naming.py). Reconcile runs at service start, periodically in the service, and
on demand, under the VM's lock, and is idempotent: a second run right after the first changes nothing.

What it repairs, and why each case happens:

- A Hub snapshot with no row: the VM was rolled back to an older checkpoint, whose database
  predates this snapshot (or the database was restored from an older copy). Re-imported as
  ``completed`` from the description. A partial one (``snapstate`` set) with no row is removed,
  unless a snapshot task still runs on the VM.
- A ``creating`` or ``failed`` row whose snapshot is complete: the process died (or timed out, or
  lost the database) after Proxmox finished. This is also the checkpoint the VM was restored
  *from*: its own database captured the row mid-protocol. A complete snapshot is a completed
  checkpoint: resolved to ``completed``.
- A ``creating`` or ``failed`` row whose snapshot is partial or absent: while a snapshot task still
  runs on the VM (known by the row's UPID, or, when the process died before storing it, by the
  node's active tasks for the VM) it is left alone and reported in progress; otherwise the process
  died part-way: the partial snapshot is removed and the row is ``failed``.
- A ``completed`` row whose snapshot is gone (removed by hand, or a delete died before updating the
  row): ``deleted``. One left half-deleted (``snapstate: delete``) is deleted properly first.
- A ``deleted`` row whose snapshot exists: the delete's task did not finish. Removed.
- A completed row without the blessing its snapshot's description records (``hub-blessed``): the
  database was rolled back to before the blessing. The row takes the blessing back.

Each row is settled on its own: a row that cannot be settled now (the VM locked by a backup, the
database gone for a moment) is reported with the reason and left for the next run, and the rest go
on. Only when nothing can be done (Proxmox unreachable, the VM unknown) does the run fail; either
way the run is audited. Nothing foreign (any snapshot ``naming.owned`` does not claim) is ever
touched, and every change is audited with the reason.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from hubcore.proxmox import ProxmoxError, VmRef
from runtime import audit
from runtime.checkpoints import naming
from runtime.checkpoints.records import CheckpointKind, CheckpointRecord, CheckpointStatus
from runtime.db import Checkpoint, Database
from runtime.errors import HubError, OperationError
from runtime.locks import VmLocks, vm_lock_name
from runtime.settings import Settings
from runtime.vms import VmLocator
from runtime.wiring import Services

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxClient, Snapshot  # the client module: only when Proxmox is used

# A lock a snapshot task holds on the VM while it runs (qemu-server PVE/QemuConfig.pm via
# pve-guest-common AbstractConfig::snapshot_create / snapshot_delete).
_SNAPSHOT_LOCKS = frozenset({"snapshot", "snapshot-delete"})


@dataclass
class ReconcileReport:
    vm_id: int
    changes: list[dict[str, Any]] = field(default_factory=lambda: list[dict[str, Any]]())
    foreign: int = 0
    in_progress: list[str] = field(default_factory=lambda: list[str]())
    unsettled: list[dict[str, str]] = field(default_factory=lambda: list[dict[str, str]]())

    def add(self, uuid: str, action: str, why: str) -> None:
        self.changes.append({"uuid": uuid, "action": action, "why": why})

    def left(self, uuid: str, why: str) -> None:
        self.unsettled.append({"uuid": uuid, "why": why})

    def to_public(self) -> dict[str, Any]:
        return {
            "vm_id": self.vm_id,
            "changes": self.changes,
            "foreign_snapshots_ignored": self.foreign,
            "in_progress": self.in_progress,
            "unsettled": self.unsettled,
        }


class ReconcileFailed(OperationError):
    """Nothing could be reconciled for the VM (Proxmox unreachable, the VM unknown, the lock busy)."""


class Reconciler:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        proxmox: ProxmoxClient,
        locks: VmLocks,
        vms: VmLocator,
        actor: str = "hubctl",
    ) -> None:
        self.settings = settings
        self.db = db
        self.proxmox = proxmox
        self.locks = locks
        self.vms = vms
        self.actor = actor

    @classmethod
    def build(cls, services: Services, *, actor: str) -> Reconciler:
        return cls(
            settings=services.settings,
            db=services.ready_db(),
            proxmox=services.proxmox,
            locks=services.locks,
            vms=services.vms,
            actor=actor,
        )

    def run(self, *, vmid: int | None = None, audit_steady: bool = True) -> ReconcileReport:
        """Reconcile one VM (default: the Hub's). Raises ReconcileFailed, audited, when nothing could
        be done; otherwise returns the report, whose ``unsettled`` lists what is left for later.

        ``audit_steady=False`` leaves a run that found nothing to do (no change, nothing unsettled or
        in progress) out of the audit trail: the service's periodic reconcile of every owned VM
        would otherwise add one entry per VM per interval (500 machines, every 5 minutes: 144,000 a
        day) that say nothing. Every change is audited on its own either way."""
        vmid = vmid if vmid is not None else self.settings.hub_vmid()
        try:
            with self.locks.hold(vm_lock_name(vmid), wait=self.settings.lock_wait_seconds):
                vm = self.vms.locate(vmid)
                snapshots = self.proxmox.list_snapshots(vm.node, vm.vmid)
                report = self._settle_all(vm, snapshots)
        except HubError as exc:
            self._audit_run(vmid, outcome="failed", details={"error": str(exc)})
            raise ReconcileFailed(f"reconcile of VM {vmid}: nothing could be settled: {exc}") from exc
        if audit_steady or report.changes or report.unsettled or report.in_progress:
            self._audit_run(
                vmid, outcome="partial" if report.unsettled else "completed", details=report.to_public()
            )
        return report

    def run_many(
        self, vmids: list[int], *, audit_steady: bool = True
    ) -> tuple[list[ReconcileReport], list[dict[str, Any]]]:
        """Reconcile each VM on its own, in one process: one cluster listing locates them all (the
        locator's cache), then one snapshot list per VM, so the cost grows with VMs, not rows.
        Returns the reports and the VMs that could not be reconciled at all, with why."""
        reports: list[ReconcileReport] = []
        failed: list[dict[str, Any]] = []
        for vmid in vmids:
            try:
                reports.append(self.run(vmid=vmid, audit_steady=audit_steady))
            except ReconcileFailed as exc:
                failed.append({"vm_id": vmid, "error": str(exc)})
        return reports, failed

    def _settle_all(self, vm: VmRef, snapshots: list[Snapshot]) -> ReconcileReport:
        report = ReconcileReport(vm_id=vm.vmid)
        ours: dict[str, tuple[Snapshot, naming.Ownership]] = {}
        for snap in snapshots:
            claim = naming.owned(snap.name, snap.description)
            if claim is None:
                report.foreign += 1
            else:
                ours[claim.uuid] = (snap, claim)
        with self.db.session() as s:
            rows = {
                row.uuid: CheckpointRecord.of(row)
                for row in s.scalars(select(Checkpoint).where(Checkpoint.vm_id == vm.vmid))
            }
        busy = _VmActivity(self.proxmox, vm)
        for uuid, (snap, claim) in ours.items():
            row = rows.get(uuid)
            with _one_row(uuid, report):
                if row is None:
                    self._adopt_or_remove(vm=vm, snap=snap, claim=claim, busy=busy, report=report)
                else:
                    self._settle_row(row=row, vm=vm, snap=snap, busy=busy, report=report)
                    self._restore_blessing(row=row, claim=claim, report=report)
        for uuid, row in rows.items():
            if uuid not in ours:
                with _one_row(uuid, report):
                    self._settle_missing(row=row, busy=busy, report=report)
        return report

    # ------------------------------------------------------------------ cases

    def _adopt_or_remove(
        self,
        *,
        vm: VmRef,
        snap: Snapshot,
        claim: naming.Ownership,
        busy: _VmActivity,
        report: ReconcileReport,
    ) -> None:
        if not snap.complete:
            if busy.snapshot_task_running():
                report.in_progress.append(claim.uuid)
                return
            self._remove(vm, snap.name, force=True)
            self._audit(
                claim.uuid,
                "reconcile.remove_partial",
                {
                    "snapname": snap.name,
                    "snapstate": snap.snapstate,
                    "why": "partial Hub snapshot with no checkpoint row, and no snapshot task running",
                },
            )
            report.add(claim.uuid, "removed partial snapshot", "no row, snapshot incomplete")
            return
        created = claim.created_at or _from_epoch(snap.snaptime) or datetime.now(UTC)
        kind = (
            claim.kind if claim.kind in {k.value for k in CheckpointKind} else CheckpointKind.IMPORTED.value
        )
        with self.db.session() as s:
            s.add(
                Checkpoint(
                    uuid=claim.uuid,
                    vm_id=vm.vmid,
                    node=vm.node,
                    snapname=snap.name,
                    kind=kind,
                    status=CheckpointStatus.COMPLETED.value,
                    reason=claim.reason,
                    created_at=created,
                    completed_at=_from_epoch(snap.snaptime) or created,
                    protected=claim.protected,
                    error=None,
                    upid=None,
                    label=claim.label or kind,
                    vmstate=snap.vmstate,
                    blessed_at=claim.blessed_at,
                )
            )
            audit.record(
                s,
                actor=self.actor,
                action="reconcile.import",
                target=claim.uuid,
                outcome="completed",
                details={
                    "snapname": snap.name,
                    "why": "Hub snapshot on Proxmox unknown to this database "
                    "(rolled back or restored from an older copy)",
                },
            )
        report.add(claim.uuid, "imported", "Hub snapshot on Proxmox had no row")

    def _restore_blessing(
        self, *, row: CheckpointRecord, claim: naming.Ownership, report: ReconcileReport
    ) -> None:
        """A blessing the database forgot (it was rolled back to before the blessing) but the
        snapshot's description keeps: Proxmox is the truth, so the row takes it back."""
        if claim.blessed_at is None or row.blessed_at is not None:
            return
        with self.db.session() as s:
            current = s.get_one(Checkpoint, row.uuid)
            if current.status != CheckpointStatus.COMPLETED.value:
                return
            current.blessed_at = claim.blessed_at
            current.bless_refused = None
            audit.record(
                s,
                actor=self.actor,
                action="reconcile.bless",
                target=row.uuid,
                outcome="completed",
                details={
                    "blessed_at": claim.blessed_at.isoformat(),
                    "why": "the snapshot's description says blessed; the database did not know",
                },
            )
        report.add(row.uuid, "blessing restored", "blessed on Proxmox, not in the database")

    def _settle_row(
        self, *, row: CheckpointRecord, vm: VmRef, snap: Snapshot, busy: _VmActivity, report: ReconcileReport
    ) -> None:
        status = row.status
        if status in (CheckpointStatus.CREATING, CheckpointStatus.FAILED):
            if snap.complete:
                self._set_status(
                    row,
                    CheckpointStatus.COMPLETED,
                    error=None,
                    why=f"{status} row, but its snapshot is complete on Proxmox (the process died, timed "
                    "out or lost the database after the task, or this VM was restored from it)",
                )
                report.add(row.uuid, "completed", f"{status} row, snapshot complete")
            elif self._task_running(row, busy):
                report.in_progress.append(row.uuid)
            else:
                self._remove(vm, snap.name, force=True)
                if status is CheckpointStatus.CREATING:
                    self._set_status(
                        row,
                        CheckpointStatus.FAILED,
                        error="interrupted: partial snapshot removed",
                        why="creating row, snapshot left incomplete, and no snapshot task running",
                    )
                else:
                    self._audit(
                        row.uuid,
                        "reconcile.remove_leftover",
                        {
                            "snapname": snap.name,
                            "status": status.value,
                            "why": "failed row, partial snapshot",
                        },
                    )
                report.add(
                    row.uuid,
                    "failed" if status is CheckpointStatus.CREATING else "removed leftover snapshot",
                    "partial snapshot removed",
                )
        elif status is CheckpointStatus.COMPLETED and not snap.complete:
            if self._task_running(row, busy):
                report.in_progress.append(row.uuid)
                return
            self._remove(vm, snap.name, force=True)
            self._set_status(
                row,
                CheckpointStatus.DELETED,
                error=None,
                why=f"snapshot half-{snap.snapstate}d on Proxmox; finished the removal",
            )
            report.add(row.uuid, "deleted", f"snapstate {snap.snapstate}")
        elif status is CheckpointStatus.DELETED:
            if busy.snapshot_task_running():
                report.in_progress.append(row.uuid)
                return
            self._remove(vm, snap.name, force=True)
            self._audit(
                row.uuid,
                "reconcile.remove_leftover",
                {
                    "snapname": snap.name,
                    "status": status.value,
                    "why": "row is deleted but its snapshot exists",
                },
            )
            report.add(row.uuid, "removed leftover snapshot", f"row {status}")

    def _settle_missing(self, *, row: CheckpointRecord, busy: _VmActivity, report: ReconcileReport) -> None:
        status = row.status
        if status is CheckpointStatus.CREATING:
            if self._task_running(row, busy):
                report.in_progress.append(row.uuid)
                return
            self._set_status(
                row,
                CheckpointStatus.FAILED,
                error="interrupted: no snapshot was made",
                why="creating row without a snapshot, and no snapshot task running",
            )
            report.add(row.uuid, "failed", "no snapshot on Proxmox")
        elif status is CheckpointStatus.COMPLETED:
            self._set_status(
                row, CheckpointStatus.DELETED, error=None, why="snapshot no longer exists on Proxmox"
            )
            report.add(row.uuid, "deleted", "snapshot missing on Proxmox")

    # ---------------------------------------------------------------- helpers

    def _task_running(self, row: CheckpointRecord, busy: _VmActivity) -> bool:
        """Is Proxmox still working on this row's snapshot? By its UPID when the row has one; else (the
        process died between the request and storing the UPID) by any snapshot task on the VM."""
        if row.upid:
            try:
                if self.proxmox.task_status(row.upid).get("status") == "running":
                    return True
            except ProxmoxError:
                pass  # the task is unknown (node rebooted, log rotated): ask the VM instead
        return busy.snapshot_task_running()

    def _remove(self, vm: VmRef, name: str, *, force: bool) -> None:
        naming.remove_hub_snapshot(
            self.proxmox,
            node=vm.node,
            vmid=vm.vmid,
            name=name,
            force=force,
            timeout=self.settings.task_timeout_seconds,
        )

    def _set_status(
        self, row: CheckpointRecord, status: CheckpointStatus, *, error: str | None, why: str
    ) -> None:
        now = datetime.now(UTC)
        with self.db.session() as s:
            cp = s.get_one(Checkpoint, row.uuid)
            before = cp.status
            cp.status = status.value
            cp.error = error
            if status is CheckpointStatus.DELETED:
                cp.deleted_at = now
            elif cp.completed_at is None or status is CheckpointStatus.COMPLETED:
                cp.completed_at = cp.completed_at or now
            audit.record(
                s,
                actor=self.actor,
                action="reconcile.status",
                target=cp.uuid,
                outcome="completed",
                details={"from": before, "to": status.value, "why": why},
                at=now,
            )

    def _audit(self, uuid: str, action: str, details: dict[str, Any]) -> None:
        with self.db.session() as s:
            audit.record(
                s, actor=self.actor, action=action, target=uuid, outcome="completed", details=details
            )

    def _audit_run(self, vmid: int, *, outcome: str, details: dict[str, Any]) -> None:
        try:
            with self.db.session() as s:
                audit.record(
                    s,
                    actor=self.actor,
                    action="reconcile",
                    target=f"vm/{vmid}",
                    outcome=outcome,
                    details=details,
                )
        except HubError:
            pass  # the database is what failed: the caller reports the run's outcome itself


class _VmActivity:
    """Whether a snapshot task runs on the VM, asked once per reconcile run (and only if needed)."""

    def __init__(self, proxmox: ProxmoxClient, vm: VmRef) -> None:
        self.proxmox = proxmox
        self.vm = vm
        self._running: bool | None = None

    def snapshot_task_running(self) -> bool:
        if self._running is None:
            self._running = self._ask()
        return self._running

    def _ask(self) -> bool:
        # The VM's config lock is visible with VM.Audit alone; the node's task list names the task.
        if self.proxmox.vm_status(self.vm).lock in _SNAPSHOT_LOCKS:
            return True
        return self.proxmox.running_snapshot_task(self.vm.node, self.vm.vmid) is not None


@contextmanager
def _one_row(uuid: str, report: ReconcileReport) -> Generator[None, None, None]:
    """One row's trouble is that row's: reported, left for the next run, and the rest go on."""
    try:
        yield
    except HubError as exc:
        report.left(uuid, str(exc))


def _from_epoch(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None
