"""What a project and a machine are inside the runtime: frozen records, their enums and the marker.

No database or web import here, so the CLI can offer the enums and validate names cheaply. The
marker is the ownership contract other code relies on (the fleet selects a project's VMs by it):

- PVE tags ``hub-machine`` and ``hub-project-<project>`` on the VM;
- a line ``hub-machine-uuid: <uuid>`` in its description;
- the VM in the Hub's pool (``HUB_POOL``).

Project names are restricted so the tag fits PVE's ``pve-tag`` format (pve-common
``src/PVE/JSONSchema.pm``, ``pve_verify_tag``: ``[a-z0-9_][a-z0-9_\\-\\+\\.]*``, case-insensitive):
lowercase letters, digits and ``-``, starting with a letter, at most 32 characters.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.db.models import Machine, Project

MACHINE_TAG = "hub-machine"
PROJECT_TAG_PREFIX = "hub-project-"
UUID_LINE = "hub-machine-uuid"
PROJECT_NAME = re.compile(r"[a-z][a-z0-9-]{0,31}")
# A machine name is also the VM's name: PVE's name is a DNS name (pve-common ``dns-name``).
MACHINE_NAME = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
_UUID_LINE = re.compile(rf"^{UUID_LINE}: ?([0-9a-f-]{{36}})\s*$", re.MULTILINE)


class MachineStatus(StrEnum):
    CREATING = "creating"  # reserved; create has not finished (a crash resumes it)
    RUNNING = "running"
    STOPPED = "stopped"
    FAILED = "failed"  # create failed; its capacity stays reserved until destroyed
    MISSING = "missing"  # the VM vanished outside the Hub (noticed by cluster sync)
    DESTROYED = "destroyed"


# States whose machines hold capacity against the quotas.
HOLDING = (
    MachineStatus.CREATING.value,
    MachineStatus.RUNNING.value,
    MachineStatus.STOPPED.value,
    MachineStatus.FAILED.value,
)


class CreateStep(StrEnum):
    RESERVED = "reserved"
    ALLOCATED = "allocated"
    CLONED = "cloned"
    CONFIGURED = "configured"
    STARTED = "started"


def project_tag(project: str) -> str:
    return PROJECT_TAG_PREFIX + project


def tags_for(project: str) -> str:
    """PVE's tag list for a machine (``;``-separated, as PVE writes it)."""
    return f"{MACHINE_TAG};{project_tag(project)}"


def describe(*, uuid: str, project: str, name: str) -> str:
    return (
        "Hub task machine (managed by hubctl; do not edit these lines)\n"
        f"{UUID_LINE}: {uuid}\nhub-machine-project: {project}\nhub-machine-name: {name}\n"
    )


def uuid_in(description: str | None) -> str | None:
    found = _UUID_LINE.search(description or "")
    return found.group(1) if found else None


def valid_project_name(name: str) -> bool:
    return bool(PROJECT_NAME.fullmatch(name))


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


@dataclass(frozen=True, slots=True)
class Limits:
    cores: int | None = None
    memory_mib: int | None = None
    disk_gb: int | None = None
    machines: int | None = None

    def to_public(self) -> dict[str, int | None]:
        return {
            "cores": self.cores,
            "memory_mib": self.memory_mib,
            "disk_gb": self.disk_gb,
            "machines": self.machines,
        }


@dataclass(frozen=True, slots=True)
class Usage:
    cores: int = 0
    memory_mib: int = 0
    disk_gb: int = 0
    machines: int = 0

    def to_public(self) -> dict[str, int]:
        return {
            "cores": self.cores,
            "memory_mib": self.memory_mib,
            "disk_gb": self.disk_gb,
            "machines": self.machines,
        }


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    name: str
    limits: Limits
    budget: float | None
    spent: float
    checkpoint_schedule: str | None
    retention: dict[str, int] | None
    over_budget_since: datetime | None
    created_at: datetime

    @classmethod
    def of(cls, row: Project) -> ProjectRecord:
        return cls(
            name=row.name,
            limits=Limits(row.max_cores, row.max_memory_mib, row.max_disk_gb, row.max_machines),
            budget=row.budget,
            spent=float(row.spent or 0.0),
            checkpoint_schedule=row.checkpoint_schedule,
            retention=dict(row.retention) if row.retention else None,
            over_budget_since=row.over_budget_since,
            created_at=row.created_at,
        )

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limits": self.limits.to_public(),
            "budget": self.budget,
            "spent": round(self.spent, 6),
            "checkpoint_schedule": self.checkpoint_schedule,
            "retention": self.retention,
            "over_budget_since": iso(self.over_budget_since),
            "created_at": iso(self.created_at),
        }


@dataclass(frozen=True, slots=True)
class MachineRecord:
    uuid: str
    name: str
    project: str
    vm_id: int | None
    node: str | None
    status: MachineStatus
    step: CreateStep
    cores: int
    memory_mib: int
    disk_gb: int
    network: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    destroyed_at: datetime | None
    cpu: float
    cost: float
    idle: bool

    @classmethod
    def of(cls, row: Machine) -> MachineRecord:
        return cls(
            uuid=row.uuid,
            name=row.name,
            project=row.project,
            vm_id=row.vm_id,
            node=row.node,
            status=MachineStatus(row.status),
            step=CreateStep(row.step),
            cores=row.cores,
            memory_mib=row.memory_mib,
            disk_gb=row.disk_gb,
            network=row.network,
            error=row.error,
            created_at=row.created_at,
            updated_at=row.updated_at,
            destroyed_at=row.destroyed_at,
            cpu=float(row.cpu or 0.0),
            cost=float(row.cost or 0.0),
            idle=bool(row.idle),
        )

    def to_public(self) -> dict[str, Any]:
        return {
            "uuid": self.uuid,
            "name": self.name,
            "project": self.project,
            "vm_id": self.vm_id,
            "node": self.node,
            "status": self.status.value,
            "step": self.step.value,
            "cores": self.cores,
            "memory_mib": self.memory_mib,
            "disk_gb": self.disk_gb,
            "network": self.network,
            "error": self.error,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "destroyed_at": iso(self.destroyed_at),
            "cpu": self.cpu,
            "cost": round(self.cost, 6),
            "idle": self.idle,
        }
