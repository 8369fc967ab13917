"""Which VMs the Hub owns, and which of them a selector picks, from ONE cluster listing.

Ownership is decided on what Proxmox says about the VM, never on a name or an id range:

- the Hub VM (``HUB_VMID``) is owned;
- any other VM is owned only when it carries the ``hub-machine`` tag AND sits in the Hub's pool
  (``HUB_POOL``). A VM without ``hub-machine`` is never acted on, whatever else it is tagged with
  (``hub-project-x`` alone names no machine of ours), and one tagged ``hub-machine`` in another pool
  is another hub's. With ``HUB_POOL`` unset the Hub owns no machine VM.

Templates are never checkpointed: PVE refuses a snapshot of one ("you can't take a snapshot if it's a
template", pve-guest-common src/PVE/AbstractConfig.pm ``__snapshot_prepare``).

The listing is ``GET /cluster/resources?type=vm`` through the ``VmLocator`` (``hubcore``'s
``cluster_vms``), read fresh once; the locator keeps it, so the per-VM operations that follow
locate their VM from the same answer instead of asking again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from runtime.fleet.records import MACHINE_TAG, Selector, Target

if TYPE_CHECKING:
    from hubcore.proxmox import VmResource
    from runtime.settings import Settings
    from runtime.vms import VmLocator


def _tags(vm: VmResource) -> set[str]:
    return {t.lower() for t in vm.tags}


def owned(vm: VmResource, *, hub_vmid: int | None, pool: str | None) -> bool:
    """Is this VM the Hub's to act on? (The Hub VM, or a tagged machine in the Hub's pool.)"""
    if hub_vmid is not None and vm.vmid == hub_vmid:
        return True
    return pool is not None and vm.pool == pool and MACHINE_TAG in _tags(vm)


def select(
    vms: list[VmResource], selector: Selector, *, hub_vmid: int | None, pool: str | None
) -> list[Target]:
    """The owned, non-template VMs the selector picks, in vmid order."""
    want = selector.tag
    picked = [
        vm
        for vm in vms
        if not vm.template and owned(vm, hub_vmid=hub_vmid, pool=pool) and (want is None or want in _tags(vm))
    ]
    return [Target(vm_id=vm.vmid, node=vm.node, name=vm.name) for vm in sorted(picked, key=lambda v: v.vmid)]


def owned_vms(vms: list[VmResource], *, settings: Settings) -> list[VmResource]:
    """The owned VMs that can have checkpoints: templates cannot be snapshotted, so are left out."""
    return [vm for vm in vms if not vm.template and owned(vm, hub_vmid=settings.vmid, pool=settings.pool)]


def targets(locator: VmLocator, selector: Selector, *, settings: Settings) -> list[Target]:
    """Select from one fresh cluster listing (which also primes the locator for what follows)."""
    return select(locator.all(fresh=True), selector, hub_vmid=settings.vmid, pool=settings.pool)
