"""The machines domain's job kinds. Each handler is idempotent: a build resumes from the row's step,
start/stop ask for a state (a no-op when the VM is in it), destroy of a destroyed machine is done.

A create over the API is reserved in the request (so a quota refusal is the answer, 409, with no job
and no Proxmox call) and built by ``machine.build``; ``machine.create`` reserves and builds in the job.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from runtime.jobs.registry import JobContext, JobKind
from runtime.machines.records import MACHINE_NAME, PROJECT_NAME


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CreateParams(_Params):
    project: str = Field(pattern=f"^{PROJECT_NAME.pattern}$")
    name: str | None = Field(default=None, pattern=f"^{MACHINE_NAME.pattern}$")
    cores: int | None = Field(default=None, ge=1, le=4096, strict=True)
    memory_mib: int | None = Field(default=None, ge=16, le=64 * 1024 * 1024, strict=True)
    disk_gb: int | None = Field(default=None, ge=1, le=1_000_000, strict=True)
    network: str | None = Field(default=None, max_length=64)


class BuildParams(_Params):
    uuid: str = Field(min_length=36, max_length=36)


class RefParams(_Params):
    machine: str = Field(min_length=1, max_length=64)


class SnapshotParams(RefParams):
    reason: str | None = Field(default=None, max_length=500)


class SyncParams(_Params):
    pass


def _svc(ctx: JobContext) -> Any:
    from runtime.machines.lifecycle import MachineService

    return MachineService.build_from(ctx.services, actor=ctx.actor, progress=ctx.progress)


def create(ctx: JobContext, params: CreateParams) -> dict[str, Any]:
    return _svc(ctx).create(**params.model_dump()).to_public()


def build(ctx: JobContext, params: BuildParams) -> dict[str, Any]:
    return _svc(ctx).build(params.uuid).to_public()


def start(ctx: JobContext, params: RefParams) -> dict[str, Any]:
    return _svc(ctx).start(params.machine).to_public()


def stop(ctx: JobContext, params: RefParams) -> dict[str, Any]:
    return _svc(ctx).stop(params.machine).to_public()


def destroy(ctx: JobContext, params: RefParams) -> dict[str, Any]:
    return _svc(ctx).destroy(params.machine).to_public()


def snapshot(ctx: JobContext, params: SnapshotParams) -> dict[str, Any]:
    return _svc(ctx).snapshot(params.machine, reason=params.reason)


def sync(ctx: JobContext, _params: SyncParams) -> dict[str, Any]:
    from runtime.machines.cluster_sync import sync_machines

    return sync_machines(ctx.services, actor=ctx.actor).to_public()


KINDS: list[JobKind[Any]] = [
    JobKind("machine.create", CreateParams, create, "reserve capacity and create a task machine"),
    JobKind("machine.build", BuildParams, build, "clone, configure and start a reserved machine (resumable)"),
    JobKind("machine.start", RefParams, start, "start a task machine"),
    JobKind("machine.stop", RefParams, stop, "stop a task machine (shutdown, then hard stop)"),
    JobKind("machine.destroy", RefParams, destroy, "destroy a task machine's VM (ownership checked)"),
    JobKind(
        "machine.snapshot", SnapshotParams, snapshot, "checkpoint a task machine (the checkpoint protocol)"
    ),
    JobKind("machine.sync", SyncParams, sync, "reconcile machines with the cluster in one pass"),
]
