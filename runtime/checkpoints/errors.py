"""What can go wrong with a checkpoint, in the domain's own words.

Proxmox's answers arrive as ``hubcore.proxmox`` errors; when one of them is *why* a checkpoint
failed it stays attached as the cause (``raise ... from exc``). An outcome that Proxmox reported
correctly but that is wrong for the protocol (a snapshot missing after its task said OK) is not a
Proxmox error and is not reported as one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.errors import OperationError

if TYPE_CHECKING:
    from runtime.checkpoints.records import CheckpointRecord


class CheckpointError(OperationError):
    """The checkpoint was attempted and failed; ``checkpoint`` is the record as it was left."""

    def __init__(self, message: str, *, checkpoint: CheckpointRecord) -> None:
        self.checkpoint = checkpoint
        super().__init__(message)


class VerificationError(OperationError):
    """The snapshot's task ended, but the snapshot is not there, or not complete, on Proxmox."""


class CheckpointPending(OperationError):
    """The checkpoint could not be settled now, and nothing is wrong with its snapshot: the task is
    still running past our bound, or the database went away after Proxmox finished. The row stays
    ``creating``; reconcile (periodic in the service) completes or fails it from what Proxmox says."""

    def __init__(self, message: str, *, uuid: str) -> None:
        self.uuid = uuid
        super().__init__(message)
