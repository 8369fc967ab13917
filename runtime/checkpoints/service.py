"""Checkpoints of a VM: the three-step protocol, protection, deletion and pruning.

The protocol, for one VM under the runtime's VM lock:

1. mark: insert the row as ``creating`` (committed, so a crash leaves a trace reconcile can find);
2. snapshot: ask Proxmox for the snapshot and wait for its task (``OK`` or ``WARNINGS: N``);
3. verify: the snapshot must exist on Proxmox and be complete (no ``snapstate``); then mark
   ``completed``.

On any failure the row becomes ``failed`` with the error and a partial snapshot is removed. Every
transition is audited. A crash at any instant is repaired by ``reconcile`` (see reconcile.py), which
the service also runs at start. All steps are idempotent: re-running after a crash never creates a
second snapshot for one checkpoint or deletes anything the Hub does not own.

The VM is named by its id; its node is resolved from the cluster for every operation (a VM migrates),
so a checkpoint of any VM goes to the node the VM is on.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from hubcore.proxmox import ProxmoxError, ProxmoxTaskTimeout, VmRef
from runtime import audit, failpoints
from runtime.checkpoints import naming
from runtime.checkpoints.errors import CheckpointError, CheckpointPending, VerificationError
from runtime.checkpoints.queries import CheckpointQueries
from runtime.checkpoints.records import CheckpointKind, CheckpointRecord, CheckpointStatus, default_label
from runtime.checkpoints.retention import Candidate, Decision, RetentionPolicy, decide, guard_blessed
from runtime.db import Checkpoint, Database
from runtime.db.models import Machine, Project, new_uuid
from runtime.db.retry import retry_write
from runtime.errors import DatabaseError, OperationError, UsageError
from runtime.locks import VmLocks, vm_lock_name
from runtime.settings import Settings
from runtime.vms import VmLocator
from runtime.wiring import Services

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxClient, Snapshot  # the client module: only when Proxmox is used

Progress = Callable[[str], None]
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _quiet(_: str) -> None:
    pass


class CheckpointService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        proxmox: ProxmoxClient,
        locks: VmLocks,
        vms: VmLocator,
        actor: str = "hubctl",
        clock: Clock = _utcnow,
        progress: Progress = _quiet,
    ) -> None:
        self.settings = settings
        self.db = db
        self.proxmox = proxmox
        self.locks = locks
        self.vms = vms
        self.actor = actor
        self.clock = clock
        self.progress = progress

    @classmethod
    def build(cls, services: Services, *, actor: str, progress: Progress = _quiet) -> CheckpointService:
        return cls(
            settings=services.settings,
            db=services.ready_db(),
            proxmox=services.proxmox,
            locks=services.locks,
            vms=services.vms,
            actor=actor,
            progress=progress,
        )

    # ----------------------------------------------------------------- create

    def create(
        self,
        *,
        kind: CheckpointKind = CheckpointKind.MANUAL,
        reason: str | None = None,
        vmid: int | None = None,
        prune: bool = True,
        label: str | None = None,
        vmstate: bool | None = None,
    ) -> CheckpointRecord:
        """Take a checkpoint. ``label`` picks its retention pool (default: its kind); ``vmstate``
        saves the RAM too (default: ``HUB_CHECKPOINT_VMSTATE`` for scheduled ones, else no)."""
        if kind is CheckpointKind.IMPORTED:
            raise UsageError("--kind: 'imported' is reserved for checkpoints found by reconcile")
        if vmstate is None:
            vmstate = kind is CheckpointKind.SCHEDULED and self.settings.checkpoint_vmstate
        vmid = vmid if vmid is not None else self.settings.hub_vmid()
        with self.locks.hold(vm_lock_name(vmid), wait=self.settings.lock_wait_seconds):
            vm = self.vms.locate(vmid)
            record = self._mark(kind=kind, reason=reason, vm=vm, label=label, vmstate=vmstate)
            try:
                record = self._snapshot(record)
                self._verify(record)
            except ProxmoxTaskTimeout as exc:
                # Slow is not failed: the task may still complete, and then so does the checkpoint.
                self._audit_pending(record, f"snapshot task still running after our bound ({exc})")
                raise CheckpointPending(
                    f"checkpoint {record.uuid}: the snapshot task is still running after "
                    f"{self.settings.task_timeout_seconds:.0f}s; the checkpoint stays 'creating' and "
                    "reconcile completes it when the task ends",
                    uuid=record.uuid,
                ) from exc
            except (ProxmoxError, VerificationError) as exc:
                self._fail(record, exc)
                raise CheckpointError(
                    f"checkpoint {record.uuid} failed: {exc}", checkpoint=self.show(record.uuid)
                ) from exc
            try:
                done = retry_write(lambda: self._complete(record))
            except DatabaseError as exc:
                raise CheckpointPending(
                    f"checkpoint {record.uuid}: the snapshot is complete on Proxmox but the database "
                    f"is unavailable ({exc}); the checkpoint stays 'creating' and reconcile completes it",
                    uuid=record.uuid,
                ) from exc
            failpoints.reached("checkpoint.completed")
            if prune:
                self._prune_locked(vmid)
        return done

    def _mark(
        self, *, kind: CheckpointKind, reason: str | None, vm: VmRef, label: str | None, vmstate: bool
    ) -> CheckpointRecord:
        uuid = new_uuid()
        now = self.clock()
        with self.db.session() as s:
            row = Checkpoint(
                uuid=uuid,
                vm_id=vm.vmid,
                node=vm.node,
                snapname=naming.snapname_for(uuid),
                kind=kind.value,
                status=CheckpointStatus.CREATING.value,
                reason=reason,
                created_at=now,
                protected=False,
                label=label or default_label(kind),
                vmstate=vmstate,
            )
            s.add(row)
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.create",
                target=uuid,
                outcome="started",
                details={
                    "vm_id": vm.vmid,
                    "node": vm.node,
                    "kind": kind.value,
                    "label": row.label,
                    "vmstate": vmstate,
                    "reason": reason,
                },
                at=now,
            )
            record = CheckpointRecord.of(row)
        self.progress(f"marked checkpoint {uuid} as creating")
        failpoints.reached("checkpoint.marked")
        return record

    def _snapshot(self, record: CheckpointRecord) -> CheckpointRecord:
        description = naming.describe(
            uuid=record.uuid,
            kind=record.kind,
            created_at=record.created_at,
            reason=record.reason,
            label=record.label,
        )
        upid: str | None = None

        def started(task: str) -> None:
            nonlocal upid
            upid = task
            failpoints.reached("checkpoint.snapshot_posted")  # requested, UPID not stored yet
            self._set(record.uuid, upid=task)
            self.progress(f"snapshot {record.snapname} started: {task}")
            failpoints.reached("checkpoint.snapshot_started")

        result = self.proxmox.take_snapshot(
            record.node,
            record.vm_id,
            name=record.snapname,
            description=description,
            timeout=self.settings.task_timeout_seconds,
            vmstate=record.vmstate,
            on_started=started,
        )
        if result is None:  # an earlier request got through although its answer was lost
            self.progress("snapshot already present (an earlier request's answer was lost)")
        else:
            self.progress(f"snapshot task finished: {result.exitstatus}")
        failpoints.reached("checkpoint.snapshot_done")
        return record if upid is None else replace(record, upid=upid)

    def _verify(self, record: CheckpointRecord) -> None:
        snap = self._find(record.vm, record.snapname)
        if snap is None:
            raise VerificationError(f"snapshot {record.snapname} is not on the VM after its task ended")
        if not snap.complete:
            raise VerificationError(f"snapshot {record.snapname} is incomplete (snapstate {snap.snapstate})")
        self.progress(f"verified {record.snapname} on Proxmox: present and complete")

    def _complete(self, record: CheckpointRecord) -> CheckpointRecord:
        now = self.clock()
        with self.db.session() as s:
            row = s.get_one(Checkpoint, record.uuid)
            row.status = CheckpointStatus.COMPLETED.value
            row.completed_at = now
            row.error = None
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.create",
                target=row.uuid,
                outcome="completed",
                details={"vm_id": row.vm_id, "snapname": row.snapname, "upid": row.upid},
                at=now,
            )
            done = CheckpointRecord.of(row)
        self.progress(f"checkpoint {record.uuid} completed")
        return done

    def _fail(self, record: CheckpointRecord, exc: OperationError) -> None:
        """Mark the row failed, then remove a partial snapshot if one was left behind."""
        cleanup = "none needed"
        try:
            if self._find(record.vm, record.snapname) is not None:
                self._delete_snapshot(record.vm, record.snapname, force=True)
                cleanup = "partial snapshot removed"
        except ProxmoxError as cleanup_exc:
            # Leave the row failed; reconcile removes the leftover once Proxmox answers again.
            cleanup = f"partial snapshot not removed yet ({cleanup_exc}); reconcile will retry"

        def write() -> None:
            with self.db.session() as s:
                row = s.get_one(Checkpoint, record.uuid)
                row.status = CheckpointStatus.FAILED.value
                row.error = str(exc)
                row.completed_at = self.clock()
                audit.record(
                    s,
                    actor=self.actor,
                    action="checkpoint.create",
                    target=row.uuid,
                    outcome="failed",
                    details={
                        "vm_id": row.vm_id,
                        "error": str(exc),
                        "cleanup": cleanup,
                        "error_type": type(exc).__name__,
                    },
                )

        # Unwritten, the row stays 'creating' and reconcile settles it from Proxmox: nothing is lost.
        retry_write(write)
        self.progress(f"checkpoint {record.uuid} failed: {exc} ({cleanup})")

    def _audit_pending(self, record: CheckpointRecord, why: str) -> None:
        with self.db.session() as s:
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.create",
                target=record.uuid,
                outcome="pending",
                details={"vm_id": record.vm_id, "upid": record.upid, "why": why},
            )
        self.progress(f"checkpoint {record.uuid} left 'creating' for reconcile: {why}")

    # ------------------------------------------------------------- protection

    def protect(self, uuid: str, *, protected: bool = True) -> CheckpointRecord:
        """Exempt a checkpoint from retention (or lift that). Written to the snapshot's description
        too, so the protection survives a rollback of the Hub's own database."""
        record = self._completed(self.show(uuid), "can be protected")
        failpoints.reached("checkpoint.protect.unlocked")
        with self.locks.hold(vm_lock_name(record.vm_id), wait=self.settings.lock_wait_seconds):
            # Read again: a delete or prune that held the lock may have removed the snapshot, a
            # blessing may have changed the description this rewrites.
            record = self._completed(self.show(uuid), "can be protected")
            vm = self.vms.locate(record.vm_id)
            self._write_description(vm, record, protected=protected, blessed_at=record.blessed_at)
            with self.db.session() as s:
                row = s.get_one(Checkpoint, uuid)
                row.protected = protected
                row.node = vm.node
                audit.record(
                    s,
                    actor=self.actor,
                    action="checkpoint.protect" if protected else "checkpoint.unprotect",
                    target=uuid,
                    outcome="completed",
                    details={"vm_id": row.vm_id},
                )
                return CheckpointRecord.of(row)

    def _write_description(
        self, vm: VmRef, record: CheckpointRecord, *, protected: bool, blessed_at: datetime | None
    ) -> None:
        """Rewrite the snapshot's description with every field a rolled-back Hub (or the sentinel)
        must read from Proxmox alone: protection and blessing included. Caller holds the VM lock."""
        self.proxmox.set_snapshot_description(
            vm.node,
            vm.vmid,
            name=record.snapname,
            description=naming.describe(
                uuid=record.uuid,
                kind=record.kind,
                created_at=record.created_at,
                reason=record.reason,
                protected=protected,
                label=record.label,
                blessed_at=blessed_at,
            ),
        )

    # --------------------------------------------------------------- blessing

    def bless(self, uuid: str, *, at: datetime, why: str, lock_wait: float | None = None) -> CheckpointRecord:
        """Mark a completed checkpoint blessed (the Hub stayed healthy through the window after it):
        on the snapshot's description first, then the row, so Proxmox never lags the database.
        Idempotent: an already blessed checkpoint is returned as it is."""
        record = self.show(uuid)
        if record.blessed_at is not None:
            return record
        self._completed(record, "are blessed")
        failpoints.reached("checkpoint.bless.unlocked")
        wait = self.settings.lock_wait_seconds if lock_wait is None else lock_wait
        with self.locks.hold(vm_lock_name(record.vm_id), wait=wait):
            # Read again, as protect does: the description carries the protection as it is now.
            record = self.show(uuid)
            if record.blessed_at is not None:
                return record
            self._completed(record, "are blessed")
            vm = self.vms.locate(record.vm_id)
            self._write_description(vm, record, protected=record.protected, blessed_at=at)
            with self.db.session() as s:
                row = s.get_one(Checkpoint, uuid)
                row.blessed_at = at
                row.bless_refused = None
                row.node = vm.node
                audit.record(
                    s,
                    actor=self.actor,
                    action="checkpoint.bless",
                    target=uuid,
                    outcome="completed",
                    details={"vm_id": row.vm_id, "why": why, "decided_at": at.isoformat()},
                )
                return CheckpointRecord.of(row)

    def refuse_blessing(self, uuid: str, *, why: str, at: datetime) -> CheckpointRecord:
        """Record that a checkpoint will never be blessed, and why (database only: an unblessed
        snapshot's description already says nothing of blessing)."""
        with self.db.session() as s:
            row = s.get_one(Checkpoint, uuid)
            if row.blessed_at is None and row.bless_refused is None:
                row.bless_refused = why
                audit.record(
                    s,
                    actor=self.actor,
                    action="checkpoint.bless",
                    target=uuid,
                    outcome="refused",
                    details={"vm_id": row.vm_id, "why": why, "decided_at": at.isoformat()},
                )
            return CheckpointRecord.of(row)

    # ----------------------------------------------------------------- delete

    def delete(self, uuid: str) -> CheckpointRecord:
        record = self.show(uuid)
        if record.status is CheckpointStatus.DELETED:
            return record
        _refuse_protected(record)
        failpoints.reached("checkpoint.delete.unlocked")
        with self.locks.hold(vm_lock_name(record.vm_id), wait=self.settings.lock_wait_seconds):
            # Read again: it may have been protected (or deleted) while this waited for the lock.
            record = self.show(uuid)
            if record.status is CheckpointStatus.DELETED:
                return record
            _refuse_protected(record)
            return self._delete_locked(record, why="requested by operator")

    def _delete_locked(self, record: CheckpointRecord, *, why: str) -> CheckpointRecord:
        with self.db.session() as s:
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.delete",
                target=record.uuid,
                outcome="started",
                details={"vm_id": record.vm_id, "snapname": record.snapname, "why": why},
            )
        try:
            vm = self.vms.locate(record.vm_id)
            self._delete_snapshot(vm, record.snapname, force=False)
        except OperationError as exc:
            with self.db.session() as s:
                audit.record(
                    s,
                    actor=self.actor,
                    action="checkpoint.delete",
                    target=record.uuid,
                    outcome="failed",
                    details={"error": str(exc)},
                )
            raise
        now = self.clock()
        with self.db.session() as s:
            row = s.get_one(Checkpoint, record.uuid)
            row.status = CheckpointStatus.DELETED.value
            row.deleted_at = now
            audit.record(
                s,
                actor=self.actor,
                action="checkpoint.delete",
                target=row.uuid,
                outcome="completed",
                details={"vm_id": row.vm_id, "snapname": row.snapname, "why": why},
                at=now,
            )
            return CheckpointRecord.of(row)

    def _delete_snapshot(self, vm: VmRef, name: str, *, force: bool) -> None:
        naming.remove_hub_snapshot(
            self.proxmox,
            node=vm.node,
            vmid=vm.vmid,
            name=name,
            force=force,
            timeout=self.settings.task_timeout_seconds,
        )

    # ------------------------------------------------------------------ prune

    def prune(self, *, vmid: int | None = None, dry_run: bool = False) -> list[PruneItem]:
        vmid = vmid if vmid is not None else self.settings.hub_vmid()
        if dry_run:
            return [item for item in self.plan(vmid) if not item.keep]
        with self.locks.hold(vm_lock_name(vmid), wait=self.settings.lock_wait_seconds):
            return self._prune_locked(vmid)

    def policy(self, label: str = "scheduled") -> RetentionPolicy:
        """The retention policy of one label: ``HUB_RETENTION``'s entry for it, else the default.

        Scheduled checkpoints default to the ``HUB_KEEP_*`` settings (PBS semantics); manual ones keep
        their 10 newest; pre-operation and emergency ones are kept 14 and 30 days (and at least the 3
        newest); imported ones whose label is unknown are all kept; any other label keeps its 10
        newest."""
        rule = self.settings.retention.get(label)
        if rule is not None:
            return RetentionPolicy(**rule.model_dump())
        s = self.settings
        if label == CheckpointKind.SCHEDULED.value:
            return RetentionPolicy(
                keep_last=s.keep_last,
                keep_hourly=s.keep_hourly,
                keep_daily=s.keep_daily,
                keep_weekly=s.keep_weekly,
                keep_monthly=s.keep_monthly,
            )
        return _DEFAULT_POLICIES.get(label, RetentionPolicy(keep_last=10))

    def policies(self) -> dict[str, dict[str, int]]:
        labels = {CheckpointKind.SCHEDULED.value, *_DEFAULT_POLICIES, *self.settings.retention}
        return {label: asdict(self.policy(label)) for label in sorted(labels)}

    def plan(self, vmid: int) -> list[PruneItem]:
        """Every completed checkpoint of the VM with its decision and the rule behind it, newest first.

        Each label is its own pool, with its own policy: a manual checkpoint is never pruned to make
        room for scheduled ones, nor the other way round."""
        with self.db.session() as s:
            rows = [
                CheckpointRecord.of(r)
                for r in s.scalars(
                    select(Checkpoint).where(
                        Checkpoint.vm_id == vmid, Checkpoint.status == CheckpointStatus.COMPLETED.value
                    )
                )
            ]
            project_policy = _project_policy(s, vmid)
        by_id = {r.uuid: r for r in rows}
        pools: dict[str, list[Candidate]] = {}
        for r in rows:
            pools.setdefault(r.label, []).append(Candidate(id=r.uuid, at=r.created_at, protected=r.protected))
        now = self.clock()
        decisions: list[Decision] = []
        for label, candidates in pools.items():
            # A task machine's checkpoints follow its project's rule (runtime.machines.projects).
            policy = project_policy if project_policy is not None else self.policy(label)
            decisions += decide(candidates, policy, now=now)
        decisions = guard_blessed(
            decisions, blessed=[r.uuid for r in rows if r.blessed_at is not None], now=now
        )
        decisions.sort(key=lambda d: (d.at, d.id), reverse=True)
        return [PruneItem(checkpoint=by_id[d.id], keep=d.keep, rule=d.reason) for d in decisions]

    def _prune_locked(self, vmid: int) -> list[PruneItem]:
        gone: list[PruneItem] = []
        for item in self.plan(vmid):
            if item.keep:
                continue
            failpoints.reached("retention.deleting")
            cp = item.checkpoint
            self.progress(f"pruning {cp.uuid} ({cp.created_at.isoformat()}): no keep-* rule keeps it")
            deleted = self._delete_locked(cp, why="retention: no keep-* rule keeps it")
            gone.append(PruneItem(checkpoint=deleted, keep=False, rule="pruned"))
        return gone

    # ------------------------------------------------------------------ reads

    def show(self, uuid: str) -> CheckpointRecord:
        return CheckpointQueries(self.db).show(uuid)

    @staticmethod
    def _completed(record: CheckpointRecord, what: str) -> CheckpointRecord:
        """The record, if it is completed: only a completed checkpoint has a snapshot to describe.

        A change to one checkpoint calls this twice: before the VM's lock (refuse at once, without
        waiting), and again on a fresh read under it (what was read before may be stale by then)."""
        if record.status is not CheckpointStatus.COMPLETED:
            raise UsageError(
                f"checkpoint {record.uuid} is {record.status}; only completed checkpoints {what}"
            )
        return record

    # ---------------------------------------------------------------- helpers

    def _set(self, uuid: str, **values: Any) -> None:
        with self.db.session() as s:
            row = s.get_one(Checkpoint, uuid)
            for key, value in values.items():
                setattr(row, key, value)

    def _find(self, vm: VmRef, name: str) -> Snapshot | None:
        return self.proxmox.get_snapshot(vm.node, vm.vmid, name)


def _refuse_protected(record: CheckpointRecord) -> None:
    if record.protected:
        raise UsageError(f"checkpoint {record.uuid} is protected; unprotect it before deleting")


def _project_policy(session: Session, vmid: int) -> RetentionPolicy | None:
    """The retention rule of the project whose live task machine is this VM, if it has one."""
    rule = session.scalar(
        select(Project.retention)
        .join(Machine, Machine.project == Project.name)
        .where(Machine.vm_id == vmid, Machine.status.not_in(("destroyed", "missing")))
        .limit(1)
    )
    return RetentionPolicy(**rule) if rule else None


_DEFAULT_POLICIES: dict[str, RetentionPolicy] = {
    CheckpointKind.MANUAL.value: RetentionPolicy(keep_last=10),
    CheckpointKind.PRE_OPERATION.value: RetentionPolicy(keep_last=3, keep_within_days=14),
    CheckpointKind.EMERGENCY.value: RetentionPolicy(keep_last=3, keep_within_days=30),
    CheckpointKind.IMPORTED.value: RetentionPolicy(),  # keep all: we do not know what they were
}


@dataclass(frozen=True, slots=True)
class PruneItem:
    """One checkpoint in a prune plan: kept or not, and the rule that decided."""

    checkpoint: CheckpointRecord
    keep: bool
    rule: str

    def to_public(self) -> dict[str, Any]:
        return {**self.checkpoint.to_public(), "keep": self.keep, "rule": self.rule}
