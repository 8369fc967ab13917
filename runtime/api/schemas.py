"""Request and response shapes (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool

from runtime.checkpoints.records import CheckpointKind, CheckpointStatus
from runtime.db import JobState


class CheckpointPublic(BaseModel):
    uuid: str
    vm_id: int
    node: str
    snapname: str
    kind: CheckpointKind
    status: CheckpointStatus
    reason: str | None
    created_at: str
    completed_at: str | None
    error: str | None
    protected: bool
    upid: str | None
    label: str
    vmstate: bool
    blessed: bool = False
    blessed_at: str | None = None
    bless_refused: str | None = None


class CheckpointPage(BaseModel):
    items: list[CheckpointPublic]
    total: int
    limit: int
    offset: int


# A VM id in a body: a JSON integer in PVE's range, nothing that merely converts to one (``1e3``,
# ``"100"``, ``true``). ``vm_id`` is the name everywhere; ``vmid`` (the first wave's) still works.
VmIdField = Annotated[
    int | None,
    Field(
        default=None,
        ge=100,
        le=999_999_999,
        strict=True,
        validation_alias=AliasChoices("vm_id", "vmid"),
        description="The VM (default: the Hub's own). `vmid` is accepted as an alias.",
    ),
]

# What an operator may ask for by hand: ``scheduled`` is the scheduler's and ``imported`` reconcile's.
ManualKind = Literal["manual", "pre-operation", "emergency"]


class CheckpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: ManualKind = "manual"
    reason: str | None = Field(default=None, max_length=500)
    vm_id: VmIdField = None
    label: str | None = Field(
        default=None,
        pattern=r"^[a-z][a-z0-9-]{0,31}$",
        description="The retention pool (default: the kind); see HUB_RETENTION.",
    )
    vmstate: StrictBool | None = Field(default=None, description="Save the VM's RAM too.")


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: StrictBool = False
    vm_id: VmIdField = None


class PruneItemPublic(CheckpointPublic):
    keep: bool
    rule: str  # the keep-* rule that keeps it, "protected", or "pruned"


class PrunePreview(BaseModel):
    vm_id: int
    policy: dict[str, int]
    policies: dict[str, dict[str, int]]
    prune: list[PruneItemPublic]
    keep: list[PruneItemPublic]


class JobPublic(BaseModel):
    id: str
    kind: str
    params: dict[str, Any]
    state: JobState
    actor: str
    progress: list[str]
    result: dict[str, Any] | None
    error: str | None
    created_at: str
    started_at: str | None
    finished_at: str | None


class JobPage(BaseModel):
    items: list[JobPublic]
    total: int
    limit: int
    offset: int


class AuditPublic(BaseModel):
    id: int
    at: str
    actor: str
    action: str
    target: str | None
    outcome: str
    details: dict[str, Any]


class AuditPage(BaseModel):
    items: list[AuditPublic]
    total: int
    limit: int
    offset: int


HealthStatus = Literal["healthy", "degraded", "critical"]


class HealthCheck(BaseModel):
    name: str
    status: HealthStatus = Field(description="This evaluation's status of the check.")
    detail: str
    settled: HealthStatus | None = Field(default=None, description="The check's status after hysteresis.")


class HealthVerdict(BaseModel):
    status: HealthStatus
    since: str


class HealthDocument(BaseModel):
    status: HealthStatus = Field(description="The settled verdict (after hysteresis); what /readyz answers.")
    instant: HealthVerdict | None = Field(default=None, description="The latest evaluation's verdict.")
    settled: HealthVerdict | None = Field(default=None, description="The settled verdict and since when.")
    checks: list[HealthCheck]
    at: str


class Readiness(BaseModel):
    status: HealthStatus


class ErrorBody(BaseModel):
    error: str
    detail: str
