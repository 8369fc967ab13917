"""The checkpoint domain's job kinds: what the API and the scheduler queue, and how each runs.

Each handler is safe to run again after a crash: the services it calls are idempotent, and the
queue's claim makes a job run at most once.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator

from runtime.checkpoints.reconcile import Reconciler
from runtime.checkpoints.records import CheckpointKind
from runtime.checkpoints.service import CheckpointService
from runtime.jobs.registry import JobContext, JobKind
from runtime.settings import LABEL


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# ``vm_id`` is the name everywhere (API bodies, results, stored parameters). ``vmid`` is still read:
# jobs queued before the rename have it in their stored parameters, and a caller of the first wave
# may still send it. Stored parameters are the model's dump, so new rows say ``vm_id``.
def _vm_id() -> Any:
    return Field(
        default=None,
        ge=100,
        le=999_999_999,
        strict=True,
        validation_alias=AliasChoices("vm_id", "vmid"),
    )


class CreateParams(_Params):
    kind: CheckpointKind = CheckpointKind.MANUAL
    reason: str | None = Field(default=None, max_length=500)
    vm_id: int | None = _vm_id()
    label: str | None = Field(default=None, pattern=LABEL.pattern)
    vmstate: bool | None = Field(default=None, strict=True)

    @field_validator("kind")
    @classmethod
    def _not_imported(cls, value: CheckpointKind) -> CheckpointKind:
        if value is CheckpointKind.IMPORTED:
            raise ValueError("'imported' is reserved for checkpoints found by reconcile")
        return value


class DeleteParams(_Params):
    uuid: str


class PruneParams(_Params):
    dry_run: bool = False
    vm_id: int | None = _vm_id()


class ReconcileParams(_Params):
    vm_id: int | None = _vm_id()


def _service(ctx: JobContext) -> CheckpointService:
    return CheckpointService.build(ctx.services, actor=ctx.actor, progress=ctx.progress)


def create(ctx: JobContext, params: CreateParams) -> dict[str, Any]:
    return (
        _service(ctx)
        .create(
            kind=params.kind,
            reason=params.reason,
            vmid=params.vm_id,
            label=params.label,
            vmstate=params.vmstate,
        )
        .to_public()
    )


def delete(ctx: JobContext, params: DeleteParams) -> dict[str, Any]:
    return _service(ctx).delete(params.uuid).to_public()


def prune(ctx: JobContext, params: PruneParams) -> dict[str, Any]:
    svc = _service(ctx)
    pruned = svc.prune(vmid=params.vm_id, dry_run=params.dry_run)
    return {
        "dry_run": params.dry_run,
        "policy": asdict(svc.policy()),
        "policies": svc.policies(),
        "pruned": [item.to_public() for item in pruned],
    }


def reconcile(ctx: JobContext, params: ReconcileParams) -> dict[str, Any]:
    return Reconciler.build(ctx.services, actor=ctx.actor).run(vmid=params.vm_id).to_public()


KINDS: list[JobKind[Any]] = [
    JobKind("checkpoint.create", CreateParams, create, "take a checkpoint (the three-step protocol)"),
    JobKind("checkpoint.delete", DeleteParams, delete, "delete a checkpoint's snapshot"),
    JobKind("checkpoint.prune", PruneParams, prune, "apply the retention policy"),
    JobKind("reconcile", ReconcileParams, reconcile, "make the database and Proxmox agree"),
]
