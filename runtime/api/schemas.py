"""Request and response shapes (the OpenAPI schema is generated from these)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

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


class CheckpointPage(BaseModel):
    items: list[CheckpointPublic]
    total: int
    limit: int
    offset: int


class PruneRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    dry_run: bool = False


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


class HealthCheck(BaseModel):
    name: str
    status: Literal["healthy", "degraded", "critical"]
    detail: str


class HealthDocument(BaseModel):
    status: Literal["healthy", "degraded", "critical"]
    checks: list[HealthCheck]
    at: str


class ErrorBody(BaseModel):
    error: str
    detail: str
