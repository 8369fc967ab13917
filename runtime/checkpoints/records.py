"""What a checkpoint is inside the runtime: a frozen record and its two enums.

The record is what the domain code passes around (never a row dict); ``to_public()`` turns it into
the documented JSON shape (interfaces.md) only at the edges (CLI, API, job results). This module
imports no database or web code, so the CLI can offer the enums as choices without loading either.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hubcore.proxmox import VmRef
    from runtime.db.models import Checkpoint


class CheckpointStatus(StrEnum):
    CREATING = "creating"
    COMPLETED = "completed"
    FAILED = "failed"
    DELETED = "deleted"


class CheckpointKind(StrEnum):
    MANUAL = "manual"
    SCHEDULED = "scheduled"
    PRE_OPERATION = "pre-operation"
    EMERGENCY = "emergency"
    # A Hub-owned snapshot found on Proxmox that this database had no row for (re-imported).
    IMPORTED = "imported"


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    uuid: str
    vm_id: int
    node: str  # where the VM was when the row was last written; operations resolve it afresh
    snapname: str
    kind: CheckpointKind
    status: CheckpointStatus
    reason: str | None
    created_at: datetime
    completed_at: datetime | None = None
    deleted_at: datetime | None = None
    error: str | None = None
    protected: bool = False
    upid: str | None = None
    # The retention pool it belongs to (cv4pve-autosnap's --label): by default its kind, so manual and
    # scheduled checkpoints never prune each other.
    label: str = ""
    vmstate: bool = False
    # Blessing (runtime/health/blessing.py): when it was blessed, or why it never will be.
    blessed_at: datetime | None = None
    bless_refused: str | None = None

    def __post_init__(self) -> None:
        if not self.label:
            object.__setattr__(self, "label", default_label(self.kind))

    @property
    def vm(self) -> VmRef:
        from hubcore.proxmox import VmRef

        return VmRef(vmid=self.vm_id, node=self.node)

    def to_public(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "vm_id": self.vm_id,
            "node": self.node,
            "snapname": self.snapname,
            "kind": self.kind.value,
            "status": self.status.value,
            "reason": self.reason,
            "created_at": iso(self.created_at),
            "completed_at": iso(self.completed_at),
            "error": self.error,
            "protected": self.protected,
            "upid": self.upid,
            "label": self.label,
            "vmstate": self.vmstate,
            "blessed": self.blessed_at is not None,
            "blessed_at": iso(self.blessed_at),
            "bless_refused": self.bless_refused,
        }

    @classmethod
    def of(cls, row: Checkpoint) -> CheckpointRecord:
        return cls(
            uuid=row.uuid,
            vm_id=row.vm_id,
            node=row.node,
            snapname=row.snapname,
            kind=_kind(row.kind),
            status=CheckpointStatus(row.status),
            reason=row.reason,
            created_at=row.created_at,
            completed_at=row.completed_at,
            deleted_at=row.deleted_at,
            error=row.error,
            protected=row.protected,
            upid=row.upid,
            label=row.label or "",
            vmstate=bool(row.vmstate),
            blessed_at=row.blessed_at,
            bless_refused=row.bless_refused,
        )


def default_label(kind: CheckpointKind) -> str:
    return kind.value


def _kind(value: str) -> CheckpointKind:
    try:
        return CheckpointKind(value)
    except ValueError:  # a kind written by a newer runtime (the database outlived a rollback)
        return CheckpointKind.IMPORTED


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None
