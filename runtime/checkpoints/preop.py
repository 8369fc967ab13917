"""``pre_operation``: take a checkpoint before a risky operation, and refuse to start without one.

    with pre_operation(service, "upgrade postgres") as checkpoint:
        upgrade_postgres()

If the checkpoint fails the block never runs (the error propagates). The operation's outcome is
audited against the checkpoint, so the recovery ladder knows which checkpoint precedes a failure.
"""

from __future__ import annotations

from collections.abc import Generator
from contextlib import contextmanager

from runtime import audit
from runtime.checkpoints.records import CheckpointKind, CheckpointRecord
from runtime.checkpoints.service import CheckpointService


@contextmanager
def pre_operation(service: CheckpointService, reason: str) -> Generator[CheckpointRecord, None, None]:
    checkpoint = service.create(kind=CheckpointKind.PRE_OPERATION, reason=reason)
    try:
        yield checkpoint
    except BaseException as exc:
        with service.db.session() as s:
            audit.record(
                s,
                actor=service.actor,
                action="operation",
                target=checkpoint.uuid,
                outcome="failed",
                details={
                    "reason": reason,
                    "error": str(exc) or type(exc).__name__,
                    "rollback_target": checkpoint.snapname,
                },
            )
        raise
    with service.db.session() as s:
        audit.record(
            s,
            actor=service.actor,
            action="operation",
            target=checkpoint.uuid,
            outcome="completed",
            details={"reason": reason},
        )
