"""Make the database and Proxmox agree about a VM's Hub checkpoints.

Proxmox's snapshot list is the truth for what exists; a snapshot's description ties it to its
checkpoint uuid (see naming.py). Reconcile runs at service start and on demand, under the VM's
checkpoint lock, and is idempotent: a second run right after the first changes nothing.

What it repairs, and why each case happens:

- A Hub snapshot with no row: the VM was rolled back to an older checkpoint, whose database
  predates this snapshot (or the database was restored from an older copy). Re-imported as
  ``completed`` from the description. A partial one (``snapstate`` set) with no row is removed.
- A ``creating`` row whose snapshot is complete: the process died after Proxmox finished. This is
  also the checkpoint the VM was restored *from*: its own database captured the row mid-protocol.
  Resolved to ``completed``.
- A ``creating`` row whose snapshot is partial or absent, and whose task no longer runs: the process
  died part-way. Partial snapshot removed, row ``failed``. If the task still runs we leave it alone.
- A ``completed`` row whose snapshot is gone (removed by hand, or a delete died before updating the
  row): ``deleted``. One left half-deleted (``snapstate: delete``) is deleted properly first.
- A ``failed`` row whose snapshot exists: the failure's clean-up did not get through. Removed.

Nothing foreign (any snapshot ``naming.owned`` does not claim) is ever touched, and every change is
audited with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from hubcore.proxmox import ProxmoxClient, ProxmoxError, Snapshot, VmRef
from runtime import audit
from runtime.checkpoints import naming
from runtime.checkpoints.records import CheckpointKind, CheckpointRecord, CheckpointStatus
from runtime.db import Checkpoint, Database
from runtime.locks import VmLocks, vm_lock_name
from runtime.settings import Settings
from runtime.vms import VmLocator
from runtime.wiring import Services


@dataclass
class ReconcileReport:
    vm_id: int
    changes: list[dict[str, Any]] = field(default_factory=lambda: list[dict[str, Any]]())
    foreign: int = 0
    in_progress: list[str] = field(default_factory=lambda: list[str]())

    def add(self, uuid: str, action: str, why: str) -> None:
        self.changes.append({"uuid": uuid, "action": action, "why": why})

    def to_public(self) -> dict[str, Any]:
        return {
            "vm_id": self.vm_id,
            "changes": self.changes,
            "foreign_snapshots_ignored": self.foreign,
            "in_progress": self.in_progress,
        }


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

    def run(self, *, vmid: int | None = None) -> ReconcileReport:
        vmid = vmid if vmid is not None else self.settings.hub_vmid()
        with self.locks.hold(vm_lock_name(vmid), wait=self.settings.lock_wait_seconds):
            return self._run_locked(self.vms.locate(vmid))

    def _run_locked(self, vm: VmRef) -> ReconcileReport:
        vmid, node = vm.vmid, vm.node
        report = ReconcileReport(vm_id=vmid)
        snapshots = self.proxmox.list_snapshots(node, vmid)
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
                for row in s.scalars(select(Checkpoint).where(Checkpoint.vm_id == vmid))
            }

        for uuid, (snap, claim) in ours.items():
            row = rows.get(uuid)
            if row is None:
                self._adopt_or_remove(vm=vm, snap=snap, claim=claim, report=report)
            else:
                self._settle_row(row=row, vm=vm, snap=snap, report=report)
        for uuid, row in rows.items():
            if uuid not in ours:
                self._settle_missing(row=row, report=report)
        with self.db.session() as s:
            audit.record(
                s,
                actor=self.actor,
                action="reconcile",
                target=f"vm/{vmid}",
                outcome="completed",
                details=report.to_public(),
            )
        return report

    # ------------------------------------------------------------------ cases

    def _adopt_or_remove(
        self, *, vm: VmRef, snap: Snapshot, claim: naming.Ownership, report: ReconcileReport
    ) -> None:
        if not snap.complete:
            self._remove(vm, snap.name, force=True)
            self._audit(
                claim.uuid,
                "reconcile.remove_partial",
                {
                    "snapname": snap.name,
                    "snapstate": snap.snapstate,
                    "why": "partial Hub snapshot with no checkpoint row",
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

    def _settle_row(
        self, *, row: CheckpointRecord, vm: VmRef, snap: Snapshot, report: ReconcileReport
    ) -> None:
        status = row.status
        if status is CheckpointStatus.CREATING:
            if snap.complete:
                self._set_status(
                    row,
                    CheckpointStatus.COMPLETED,
                    error=None,
                    why="snapshot is complete on Proxmox (process died after the task, or "
                    "this VM was restored from this checkpoint)",
                )
                report.add(row.uuid, "completed", "creating row, snapshot complete")
            elif self._task_running(row):
                report.in_progress.append(row.uuid)
            else:
                self._remove(vm, snap.name, force=True)
                self._set_status(
                    row,
                    CheckpointStatus.FAILED,
                    error="interrupted: partial snapshot removed",
                    why="creating row, snapshot left incomplete by a dead process",
                )
                report.add(row.uuid, "failed", "partial snapshot removed")
        elif status is CheckpointStatus.COMPLETED and not snap.complete:
            if self._task_running(row):
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
        elif status in (CheckpointStatus.FAILED, CheckpointStatus.DELETED):
            self._remove(vm, snap.name, force=True)
            self._audit(
                row.uuid,
                "reconcile.remove_leftover",
                {
                    "snapname": snap.name,
                    "status": status.value,
                    "why": f"row is {status} but its snapshot still exists",
                },
            )
            report.add(row.uuid, "removed leftover snapshot", f"row {status}")

    def _settle_missing(self, *, row: CheckpointRecord, report: ReconcileReport) -> None:
        status = row.status
        if status is CheckpointStatus.CREATING:
            if self._task_running(row):
                report.in_progress.append(row.uuid)
                return
            self._set_status(
                row,
                CheckpointStatus.FAILED,
                error="interrupted: no snapshot was made",
                why="creating row without a snapshot, and no task running",
            )
            report.add(row.uuid, "failed", "no snapshot on Proxmox")
        elif status is CheckpointStatus.COMPLETED:
            self._set_status(
                row, CheckpointStatus.DELETED, error=None, why="snapshot no longer exists on Proxmox"
            )
            report.add(row.uuid, "deleted", "snapshot missing on Proxmox")

    # ---------------------------------------------------------------- helpers

    def _task_running(self, row: CheckpointRecord) -> bool:
        if not row.upid:
            return False
        try:
            return self.proxmox.task_status(row.upid).get("status") == "running"
        except ProxmoxError:
            return False  # the task is unknown (node rebooted, log rotated): it is not running

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
            elif cp.completed_at is None:
                cp.completed_at = now
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


def _from_epoch(value: int | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None
