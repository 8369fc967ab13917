"""Checkpoints of a Hub VM: the three-step protocol, deletion and pruning.

The protocol, for one VM under its cross-process lock:

1. mark: insert the row as ``creating`` (committed, so a crash leaves a trace reconcile can find);
2. snapshot: ask Proxmox for the snapshot and wait for its task (``OK`` or ``WARNINGS: N``);
3. verify: the snapshot must exist on Proxmox and be complete (no ``snapstate``); then mark
   ``completed``.

On any failure the row becomes ``failed`` with the error and a partial snapshot is removed. Every
transition is audited. A crash at any instant is repaired by ``reconcile`` (see reconcile.py), which
the service also runs at start. All steps are idempotent: re-running after a crash never creates a
second snapshot for one checkpoint or deletes anything the Hub does not own.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from hubcore.proxmox import ProxmoxClient, ProxmoxError, Snapshot
from runtime import audit, failpoints
from runtime.checkpoints import naming
from runtime.checkpoints.locking import VmLocks, vm_lock_name
from runtime.checkpoints.queries import CheckpointQueries
from runtime.checkpoints.retention import Candidate, Decision, RetentionPolicy, decide
from runtime.db import Checkpoint, CheckpointKind, CheckpointStatus, Database
from runtime.db.models import new_uuid
from runtime.errors import OperationError, UsageError
from runtime.settings import Settings

Progress = Callable[[str], None]
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _quiet(_: str) -> None:
    pass


class CheckpointError(OperationError):
    """The checkpoint was attempted and failed; ``checkpoint`` is the row as it was left."""

    def __init__(self, message: str, *, checkpoint: dict[str, Any]) -> None:
        self.checkpoint = checkpoint
        super().__init__(message)


class CheckpointService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        proxmox: ProxmoxClient,
        locks: VmLocks,
        actor: str = "hubctl",
        clock: Clock = _utcnow,
        progress: Progress = _quiet,
    ) -> None:
        self.settings = settings
        self.db = db
        self.proxmox = proxmox
        self.locks = locks
        self.actor = actor
        self.clock = clock
        self.progress = progress

    # ----------------------------------------------------------------- create

    def create(
        self,
        *,
        kind: CheckpointKind = CheckpointKind.MANUAL,
        reason: str | None = None,
        vmid: int | None = None,
        prune: bool = True,
    ) -> dict[str, Any]:
        if kind is CheckpointKind.IMPORTED:
            raise UsageError("--kind: 'imported' is reserved for checkpoints found by reconcile")
        vmid = self._vmid(vmid)
        node = self._node()
        with self.locks.hold(vm_lock_name(vmid), wait=self.settings.lock_wait_seconds):
            row = self._mark(kind=kind, reason=reason, vmid=vmid, node=node)
            try:
                self._snapshot(row)
                self._verify(row)
            except ProxmoxError as exc:
                self._fail(row, exc)
                raise CheckpointError(
                    f"checkpoint {row['uuid']} failed: {exc}", checkpoint=self.show(row["uuid"])
                ) from None
            done = self._complete(row)
            failpoints.reached("checkpoint.completed")
            if prune:
                self._prune_locked(vmid)
        return done

    def _mark(self, *, kind: CheckpointKind, reason: str | None, vmid: int, node: str) -> dict[str, Any]:
        uuid = new_uuid()
        now = self.clock()
        with self.db.session() as s:
            cp = Checkpoint(
                uuid=uuid,
                vm_id=vmid,
                node=node,
                snapname=naming.snapname_for(uuid),
                kind=kind.value,
                status=CheckpointStatus.CREATING.value,
                reason=reason,
                created_at=now,
                protected=False,
            )
            s.add(cp)
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.create",
                target=uuid,
                outcome="started",
                details={"vm_id": vmid, "node": node, "kind": kind.value, "reason": reason},
                at=now,
            )
            public = cp.to_public()
        self.progress(f"marked checkpoint {uuid} as creating")
        failpoints.reached("checkpoint.marked")
        return public

    def _snapshot(self, row: dict[str, Any]) -> None:
        description = naming.describe(
            uuid=row["uuid"],
            kind=row["kind"],
            created_at=datetime.fromisoformat(row["created_at"]),
            reason=row["reason"],
        )

        def started(upid: str) -> None:
            self._set(row["uuid"], upid=upid)
            self.progress(f"snapshot {row['snapname']} started: {upid}")
            failpoints.reached("checkpoint.snapshot_started")

        result = self.proxmox.take_snapshot(
            row["node"],
            row["vm_id"],
            name=row["snapname"],
            description=description,
            timeout=self.settings.task_timeout_seconds,
            on_started=started,
        )
        if result is None:  # an earlier request got through although its answer was lost
            self.progress("snapshot already present (an earlier request's answer was lost)")
        else:
            self.progress(f"snapshot task finished: {result.exitstatus}")
        failpoints.reached("checkpoint.snapshot_done")

    def _verify(self, row: dict[str, Any]) -> None:
        snap = self._find(row["node"], row["vm_id"], row["snapname"])
        if snap is None:
            raise ProxmoxError(f"snapshot {row['snapname']} is not in the VM's snapshot list after its task")
        if not snap.complete:
            raise ProxmoxError(f"snapshot {row['snapname']} is incomplete (snapstate {snap.snapstate})")
        self.progress(f"verified {row['snapname']} on Proxmox: present and complete")

    def _complete(self, row: dict[str, Any]) -> dict[str, Any]:
        now = self.clock()
        with self.db.session() as s:
            cp = s.get_one(Checkpoint, row["uuid"])
            cp.status = CheckpointStatus.COMPLETED.value
            cp.completed_at = now
            cp.error = None
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.create",
                target=cp.uuid,
                outcome="completed",
                details={"vm_id": cp.vm_id, "snapname": cp.snapname, "upid": cp.upid},
                at=now,
            )
            public = cp.to_public()
        self.progress(f"checkpoint {row['uuid']} completed")
        return public

    def _fail(self, row: dict[str, Any], exc: ProxmoxError) -> None:
        """Mark the row failed, then remove a partial snapshot if one was left behind."""
        cleanup = "none needed"
        try:
            snap = self._find(row["node"], row["vm_id"], row["snapname"])
            if snap is not None:
                self._delete_snapshot(row["node"], row["vm_id"], row["snapname"], force=True)
                cleanup = "partial snapshot removed"
        except ProxmoxError as cleanup_exc:
            # Leave the row failed; reconcile removes the leftover once Proxmox answers again.
            cleanup = f"partial snapshot not removed yet ({cleanup_exc}); reconcile will retry"
        with self.db.session() as s:
            cp = s.get_one(Checkpoint, row["uuid"])
            cp.status = CheckpointStatus.FAILED.value
            cp.error = str(exc)
            cp.completed_at = self.clock()
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.create",
                target=cp.uuid,
                outcome="failed",
                details={
                    "vm_id": cp.vm_id,
                    "error": str(exc),
                    "cleanup": cleanup,
                    "error_type": type(exc).__name__,
                },
            )
        self.progress(f"checkpoint {row['uuid']} failed: {exc} ({cleanup})")

    # ------------------------------------------------------------- protection

    def protect(self, uuid: str, *, protected: bool = True) -> dict[str, Any]:
        """Exempt a checkpoint from retention (or lift that). Written to the snapshot's description
        too, so the protection survives a rollback of the Hub's own database."""
        row = self.show(uuid)
        if row["status"] != CheckpointStatus.COMPLETED.value:
            raise UsageError(
                f"checkpoint {uuid} is {row['status']}; only completed checkpoints can be protected"
            )
        with self.locks.hold(vm_lock_name(row["vm_id"]), wait=self.settings.lock_wait_seconds):
            self.proxmox.set_snapshot_description(
                row["node"],
                row["vm_id"],
                name=row["snapname"],
                description=naming.describe(
                    uuid=uuid,
                    kind=row["kind"],
                    created_at=datetime.fromisoformat(row["created_at"]),
                    reason=row["reason"],
                    protected=protected,
                ),
            )
            with self.db.session() as s:
                cp = s.get_one(Checkpoint, uuid)
                cp.protected = protected
                audit.record(
                    s,
                    actor=self.actor,
                    action="checkpoint.protect" if protected else "checkpoint.unprotect",
                    target=uuid,
                    outcome="completed",
                    details={"vm_id": cp.vm_id},
                )
                return cp.to_public()

    # ----------------------------------------------------------------- delete

    def delete(self, uuid: str) -> dict[str, Any]:
        row = self.show(uuid)
        if row["status"] == CheckpointStatus.DELETED.value:
            return row
        if row["protected"]:
            raise UsageError(f"checkpoint {uuid} is protected; unprotect it before deleting")
        with self.locks.hold(vm_lock_name(row["vm_id"]), wait=self.settings.lock_wait_seconds):
            return self._delete_locked(row, why="requested by operator")

    def _delete_locked(self, row: dict[str, Any], *, why: str) -> dict[str, Any]:
        with self.db.session() as s:
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.delete",
                target=row["uuid"],
                outcome="started",
                details={"vm_id": row["vm_id"], "snapname": row["snapname"], "why": why},
            )
        try:
            self._delete_snapshot(row["node"], row["vm_id"], row["snapname"], force=False)
        except ProxmoxError as exc:
            with self.db.session() as s:
                audit.record(
                    s,
                    actor=self.actor,
                    action="checkpoint.delete",
                    target=row["uuid"],
                    outcome="failed",
                    details={"error": str(exc)},
                )
            raise
        now = self.clock()
        with self.db.session() as s:
            cp = s.get_one(Checkpoint, row["uuid"])
            cp.status = CheckpointStatus.DELETED.value
            cp.deleted_at = now
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.delete",
                target=cp.uuid,
                outcome="completed",
                details={"vm_id": cp.vm_id, "snapname": cp.snapname, "why": why},
                at=now,
            )
            return cp.to_public()

    def _delete_snapshot(self, node: str, vmid: int, name: str, *, force: bool) -> None:
        naming.remove_hub_snapshot(
            self.proxmox,
            node=node,
            vmid=vmid,
            name=name,
            force=force,
            timeout=self.settings.task_timeout_seconds,
        )

    # ------------------------------------------------------------------ prune

    def prune(self, *, vmid: int | None = None, dry_run: bool = False) -> list[dict[str, Any]]:
        vmid = self._vmid(vmid)
        if dry_run:
            return [dict(item, rule="pruned") for item in self._prune_plan(vmid) if not item["keep"]]
        with self.locks.hold(vm_lock_name(vmid), wait=self.settings.lock_wait_seconds):
            return self._prune_locked(vmid)

    def policy(self) -> RetentionPolicy:
        s = self.settings
        return RetentionPolicy(
            keep_last=s.keep_last,
            keep_hourly=s.keep_hourly,
            keep_daily=s.keep_daily,
            keep_weekly=s.keep_weekly,
            keep_monthly=s.keep_monthly,
        )

    def _prune_plan(self, vmid: int) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = list(
                s.scalars(
                    select(Checkpoint).where(
                        Checkpoint.vm_id == vmid, Checkpoint.status == CheckpointStatus.COMPLETED.value
                    )
                )
            )
            by_id = {r.uuid: r.to_public() for r in rows}
            candidates = [Candidate(id=r.uuid, at=r.created_at, protected=r.protected) for r in rows]
        decisions: list[Decision] = decide(candidates, self.policy())
        return [dict(by_id[d.id], keep=d.keep, rule=d.reason) for d in decisions]

    def _prune_locked(self, vmid: int) -> list[dict[str, Any]]:
        plan = self._prune_plan(vmid)
        gone: list[dict[str, Any]] = []
        for item in plan:
            if item["keep"]:
                continue
            failpoints.reached("retention.deleting")
            self.progress(f"pruning {item['uuid']} ({item['created_at']}): no keep-* rule keeps it")
            deleted = self._delete_locked(item, why="retention: no keep-* rule keeps it")
            gone.append(dict(deleted, keep=False, rule="pruned"))
        return gone

    # ------------------------------------------------------------------ reads

    def show(self, uuid: str) -> dict[str, Any]:
        return CheckpointQueries(self.db).show(uuid)

    # ---------------------------------------------------------------- helpers

    def _set(self, uuid: str, **values: Any) -> None:
        with self.db.session() as s:
            cp = s.get_one(Checkpoint, uuid)
            for key, value in values.items():
                setattr(cp, key, value)

    def _find(self, node: str, vmid: int, name: str) -> Snapshot | None:
        return self.proxmox.get_snapshot(node, vmid, name)

    def _vmid(self, vmid: int | None) -> int:
        self.settings.require_proxmox()
        chosen = vmid if vmid is not None else self.settings.vmid
        assert chosen is not None
        return chosen

    def _node(self) -> str:
        assert self.settings.node is not None
        return self.settings.node
