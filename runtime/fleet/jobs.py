"""The fleet domain's job kind: ``fleet.checkpoint``, queued by the API and by the scheduler.

The parameters model is also the API's request body (``POST /api/v1/fleet/checkpoints``). The job
succeeds when the fleet ran, whatever each VM's outcome: the per-VM results (the same JSON as
``hubctl fleet checkpoint --json``) are its result, so one VM's failure is reported there, next to
the VMs that did get their checkpoint, rather than turning the whole job into an error that would
hide them. It fails only when nothing could be attempted (the cluster listing unreadable, bad
settings).
"""

from __future__ import annotations

import threading
from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from runtime.checkpoints.records import CheckpointKind
from runtime.fleet.records import PROJECT_TAG_PREFIX, TAG, Outcome, Selector, Target
from runtime.fleet.runner import (
    DEFAULT_MAX_PARALLEL,
    DEFAULT_PER_NODE,
    MAX_PARALLEL,
    FleetRunner,
)
from runtime.jobs.registry import JobContext, JobKind, Progress
from runtime.settings import LABEL


class CheckpointParams(BaseModel):
    """Which owned VMs (exactly one of ``project``, ``tag``, ``all``), the limits, and the checkpoint."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project: str | None = Field(
        default=None,
        pattern=f"^{TAG.pattern}$",
        max_length=128 - len(PROJECT_TAG_PREFIX),
        description="The project's machines: owned VMs tagged hub-project-<project>.",
    )
    tag: str | None = Field(
        default=None, pattern=f"^{TAG.pattern}$", max_length=128, description="Owned VMs with this tag."
    )
    all: bool = Field(default=False, strict=True, description="Every VM the Hub owns.")
    max_parallel: int = Field(default=DEFAULT_MAX_PARALLEL, ge=1, le=MAX_PARALLEL, strict=True)
    per_node: int = Field(default=DEFAULT_PER_NODE, ge=1, le=MAX_PARALLEL, strict=True)
    kind: CheckpointKind = CheckpointKind.MANUAL
    label: str | None = Field(default=None, pattern=f"^{LABEL.pattern}$")
    vmstate: bool | None = Field(default=None, strict=True)
    reason: str | None = Field(default=None, max_length=500)

    @model_validator(mode="after")
    def _one_selector(self) -> Self:
        given = sum(1 for on in (self.project is not None, self.tag is not None, self.all) if on)
        if given != 1:
            raise ValueError("give exactly one of project, tag or all")
        if self.kind is CheckpointKind.IMPORTED:
            raise ValueError("kind 'imported' is reserved for checkpoints found by reconcile")
        return self

    def selector(self) -> Selector:
        return Selector.of(project=self.project, tag=self.tag, all_vms=self.all)


class _JobProgress:
    """One progress line on the job per finished VM (not per protocol step: 200 VMs, 200 lines)."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.total = 0
        self.done = 0
        self._lock = threading.Lock()  # finished() is called from the worker threads

    def selected(self, targets: list[Target]) -> None:
        self.total = len(targets)
        self.progress(f"{self.total} VM(s) selected")

    def started(self, target: Target) -> None:
        pass

    def finished(self, outcome: Outcome) -> None:
        with self._lock:
            self.done += 1
            done = self.done
        line = f"[{done}/{self.total}] VM {outcome.vm_id} on {outcome.node}: {outcome.status}"
        self.progress(line + (f": {outcome.error}" if outcome.error else ""))


def checkpoint(ctx: JobContext, params: CheckpointParams) -> dict[str, Any]:
    report = FleetRunner.build(ctx.services, actor=ctx.actor).checkpoint(
        params.selector(),
        max_parallel=params.max_parallel,
        per_node=params.per_node,
        kind=params.kind,
        label=params.label,
        vmstate=params.vmstate,
        reason=params.reason,
        events=_JobProgress(ctx.progress),
    )
    return report.to_public()


KINDS: list[JobKind[Any]] = [
    JobKind(
        "fleet.checkpoint",
        CheckpointParams,
        checkpoint,
        "checkpoint many owned VMs, bounded per node and overall",
    ),
]
