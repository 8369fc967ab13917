"""What a fleet operation speaks in: which VMs (a selector), and what happened to each (outcomes).

No database, web or Proxmox import, so the CLI can build a selector and offer the statuses cheaply.
``FleetReport.to_public()`` is the documented JSON (interfaces.md, "fleet checkpoint"), produced only
at the edges and in the ``fleet.checkpoint`` job's result.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runtime.errors import UsageError

# The ownership contract with the machines domain: every machine VM the Hub owns carries these PVE
# tags and lives in the Hub's pool (HUB_POOL). The Hub VM itself (HUB_VMID) is owned without them.
MACHINE_TAG = "hub-machine"
PROJECT_TAG_PREFIX = "hub-project-"

# A PVE tag (pve-common src/PVE/JSONSchema.pm, format 'pve-tag': $PVE_TAG_RE). PVE may keep a tag's
# case; the Hub writes its own tags in lowercase and compares case-insensitively.
TAG = re.compile(r"[a-z0-9_][a-z0-9_\-+.]*", re.IGNORECASE)


class SelectorKind(StrEnum):
    PROJECT = "project"
    TAG = "tag"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Selector:
    """Which owned VMs: one project's machines, the owned VMs with a tag, or every owned VM."""

    kind: SelectorKind
    value: str | None = None

    @classmethod
    def of(cls, *, project: str | None, tag: str | None, all_vms: bool) -> Selector:
        """From the three mutually exclusive options; a UsageError unless exactly one is given."""
        given = [name for name, on in (("--project", project), ("--tag", tag), ("--all", all_vms)) if on]
        if len(given) != 1:
            raise UsageError(
                "give exactly one of --project, --tag or --all"
                + (f" (got {', '.join(given)})" if given else "")
            )
        if project is not None:
            return cls(SelectorKind.PROJECT, _checked(project, "--project", prefix=PROJECT_TAG_PREFIX))
        if tag is not None:
            return cls(SelectorKind.TAG, _checked(tag, "--tag"))
        return cls(SelectorKind.ALL)

    @property
    def tag(self) -> str | None:
        """The PVE tag a VM must carry (besides being owned), or None for every owned VM."""
        if self.kind is SelectorKind.PROJECT:
            return PROJECT_TAG_PREFIX + str(self.value).lower()
        if self.kind is SelectorKind.TAG:
            return str(self.value).lower()
        return None

    def describe(self) -> str:
        if self.kind is SelectorKind.ALL:
            return "every VM the Hub owns"
        if self.kind is SelectorKind.PROJECT:
            return f"project {self.value!r} (tag {self.tag})"
        return f"owned VMs tagged {self.value!r}"

    def to_public(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "value": self.value}


def _checked(value: str, option: str, *, prefix: str = "") -> str:
    if not TAG.fullmatch(prefix + value):
        raise UsageError(
            f"{option}: {value!r} is not a valid Proxmox tag name (letters, digits, '_', '-', '+', '.')"
        )
    return value


@dataclass(frozen=True, slots=True)
class Target:
    """One selected VM, as the one cluster listing showed it."""

    vm_id: int
    node: str
    name: str | None = None


class OutcomeStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    # The snapshot task outlived our bound (or the database went away after it): the checkpoint
    # stays 'creating' and reconcile settles it. Not completed, so counted with the failures.
    PENDING = "pending"


@dataclass(frozen=True, slots=True)
class Outcome:
    vm_id: int
    node: str
    status: OutcomeStatus
    error: str | None = None
    checkpoint: str | None = None  # the checkpoint's uuid, when one was marked
    seconds: float = 0.0

    def to_public(self) -> dict[str, Any]:
        return {
            "vm_id": self.vm_id,
            "node": self.node,
            "status": self.status.value,
            "error": self.error,
            "checkpoint": self.checkpoint,
            "seconds": round(self.seconds, 3),
        }


@dataclass
class FleetReport:
    selector: Selector
    max_parallel: int
    per_node: int
    results: list[Outcome] = field(default_factory=lambda: list[Outcome]())
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return len(self.results)

    @property
    def completed(self) -> int:
        return sum(1 for r in self.results if r.status is OutcomeStatus.COMPLETED)

    @property
    def failed(self) -> int:
        """Every VM without a completed checkpoint (``pending`` ones included; their status says so)."""
        return self.total - self.completed

    def to_public(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "completed": self.completed,
            "failed": self.failed,
            "results": [r.to_public() for r in sorted(self.results, key=lambda r: r.vm_id)],
            "selector": self.selector.to_public(),
            "max_parallel": self.max_parallel,
            "per_node": self.per_node,
            "seconds": round(self.seconds, 3),
        }
