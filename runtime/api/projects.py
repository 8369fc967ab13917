"""``/api/v1/projects``: projects (limits, budget, schedule) over HTTP; rows only, synchronous."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, status
from pydantic import BaseModel, ConfigDict, Field

from runtime.api.deps import API, ERRORS, NOT_FOUND, Caller, ServicesDep
from runtime.machines.projects import ProjectStore

router = APIRouter(prefix=API, tags=["projects"])

_Count = Field(default=None, ge=0, le=1_000_000_000, strict=True)


class ProjectBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cores: int | None = _Count
    memory_mib: int | None = _Count
    disk_gb: int | None = _Count
    machines: int | None = _Count
    budget: float | None = Field(default=None, ge=0, le=1e12, allow_inf_nan=False)
    checkpoint_schedule: str | None = Field(default=None, max_length=128)
    retention: dict[str, int] | None = None


class ProjectCreate(ProjectBody):
    name: str = Field(max_length=32)


@router.get("/projects", responses=ERRORS)
def list_(_: Caller, services: ServicesDep) -> dict[str, Any]:
    return {"projects": [p.to_public() for p in ProjectStore(services.ready_db()).list()]}


@router.get("/projects/{name}", responses=NOT_FOUND)
def show(_: Caller, services: ServicesDep, name: str) -> dict[str, Any]:
    return ProjectStore(services.ready_db()).show(name).to_public()


@router.post("/projects", status_code=status.HTTP_201_CREATED, responses=ERRORS)
def create(actor: Caller, services: ServicesDep, body: ProjectCreate) -> dict[str, Any]:
    values = body.model_dump(exclude={"name"})
    return ProjectStore(services.ready_db(), actor=actor).create(body.name, **values).to_public()


@router.patch("/projects/{name}", responses=NOT_FOUND)
def update(actor: Caller, services: ServicesDep, name: str, body: ProjectBody) -> dict[str, Any]:
    """Fields present in the body are set (``null`` clears a limit); absent ones are left alone."""
    names = {
        "cores": "max_cores",
        "memory_mib": "max_memory_mib",
        "disk_gb": "max_disk_gb",
        "machines": "max_machines",
    }
    changes = {names.get(k, k): v for k, v in body.model_dump(exclude_unset=True).items()}
    return ProjectStore(services.ready_db(), actor=actor).set(name, **changes).to_public()
