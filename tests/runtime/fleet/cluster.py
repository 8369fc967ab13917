"""A three-node fake cluster with the Hub's machines and foreign VMs around them, for the fleet tests.

Ownership contract (shared with the machines domain): a machine VM the Hub owns carries the PVE tags
``hub-machine`` and ``hub-project-<project>`` and sits in the Hub's pool (HUB_POOL); the Hub VM (100)
is owned as it is. Everything in FOREIGN looks like ours in one way or another and is not.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from runtime.checkpoints import naming
from runtime.db.models import new_uuid

POOL = "hub-test"
NODES = ("pve1", "pve2", "pve3")
ALPHA = (201, 202, 203, 204, 205, 206)
BETA = (301, 302, 303)
GPU = (202, 301)  # machines that also carry the tag "gpu"
# vmid: (pool, tags, template)
FOREIGN: dict[int, tuple[str | None, str, bool]] = {
    401: (POOL, "hub-project-alpha;gpu", False),  # in our pool, but not tagged hub-machine
    402: ("other-hub", "hub-machine;hub-project-alpha;gpu", False),  # another hub's machine
    403: (None, "hub-machine;hub-project-alpha", False),  # tagged, but outside any pool
    404: (POOL, "hub-machine;hub-project-alpha", True),  # a template: never checkpointed
}
MACHINES = ALPHA + BETA


def node_of(vmid: int) -> str:
    return NODES[vmid % len(NODES)]


def build(pve: Any, *, storage: str = "local-lvm") -> None:
    """Add the nodes, the machines and the foreign VMs to a fakepve that already has the Hub VM."""
    for node in NODES:
        pve.add_node(node)
    for vmid in MACHINES:
        project = "alpha" if vmid in ALPHA else "beta"
        tags = f"hub-machine;hub-project-{project}" + (";gpu" if vmid in GPU else "")
        _vm(pve, vmid, pool=POOL, tags=tags, storage=storage)
    for vmid, (pool, tags, template) in FOREIGN.items():
        _vm(pve, vmid, pool=pool, tags=tags, storage=storage, template=template)


def _vm(pve: Any, vmid: int, *, pool: str | None, tags: str, storage: str, template: bool = False) -> None:
    pve.add_vm(
        vmid,
        f"vm-{vmid}",
        node=node_of(vmid),
        status="stopped" if template else "running",
        pool=pool,
        template=template,
        config={"scsi0": f"{storage}:vm-{vmid}-disk-0,size=8G", "cores": 1, "memory": 1024, "tags": tags},
    )


def touched(pve: Any, vmid: int) -> list[tuple[str, str]]:
    """Every request fakepve saw that names this VM."""
    return [(m, p) for m, p, _ in pve.requests if f"/qemu/{vmid}/" in p or p.endswith(f"/qemu/{vmid}")]


def cluster_reads(pve: Any) -> int:
    return sum(1 for m, p, _ in pve.requests if m == "GET" and p.endswith("/cluster/resources"))


def hub_snapshot(pve: Any, vmid: int, *, when: datetime | None = None) -> str:
    """A complete Hub snapshot on the VM, as the Hub writes them (owned by its description); its uuid."""
    uuid = new_uuid()
    created = when or datetime(2026, 11, 1, tzinfo=UTC)
    pve.vm(vmid).snapshots[naming.snapname_for(uuid)] = {
        "snaptime": int(created.timestamp()),
        "description": naming.describe(uuid=uuid, kind="manual", created_at=created, reason=None),
    }
    return uuid
