"""Reconcile every VM the Hub owns, in one process: ``hubctl reconcile --all`` and the service's
periodic reconcile.

Which VMs: the Hub VM, every owned machine VM (tagged ``hub-machine`` in ``HUB_POOL``, see
selection.py) whether or not it has a checkpoint row yet (a snapshot the Hub took of it may have
outlived its database row), and every VM the database has checkpoint rows of (a checkpoint taken
with ``--vmid`` of a VM that is not a machine is still the Hub's to settle).

What it costs: ONE cluster listing (``/cluster/resources``) names and locates them all, then each
VM gets what ``Reconciler.run`` reads (its snapshot list, and more only when a row needs settling).
The count of Proxmox requests grows with the VMs, not the checkpoint rows. A VM with rows that the
listing does not show (destroyed, or no longer visible to the token) is reported in ``failed``, as
a single reconcile of it would be, but without any further request: asking for it by id would only
cost one more listing each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from runtime.checkpoints.queries import CheckpointQueries
from runtime.checkpoints.reconcile import Reconciler, ReconcileReport
from runtime.fleet import selection
from runtime.vms import UnknownVmError

if TYPE_CHECKING:
    from runtime.wiring import Services


@dataclass
class OwnedReconcile:
    vmids: list[int]  # every VM visited
    reports: list[ReconcileReport] = field(default_factory=lambda: list[ReconcileReport]())
    failed: list[dict[str, Any]] = field(default_factory=lambda: list[dict[str, Any]]())

    def to_public(self) -> dict[str, Any]:
        return {"vms": [r.to_public() for r in self.reports], "failed": self.failed}


def owned_vmids(services: Services) -> tuple[list[int], list[int]]:
    """(VMs to reconcile, VMs with rows that the cluster does not list), from one fresh listing."""
    settings = services.settings
    listing = services.vms.all(fresh=True)
    present = {vm.vmid for vm in listing}
    owned = {vm.vmid for vm in selection.owned_vms(listing, settings=settings)}
    with_rows = set(CheckpointQueries(services.ready_db()).vms_with_rows())
    hub = {settings.hub_vmid()}
    wanted = owned | with_rows | hub
    # The Hub VM is always visited: its absence is an error worth the reconcile's own message.
    return sorted(v for v in wanted if v in present or v in hub), sorted(v for v in wanted - present - hub)


def reconcile_owned(services: Services, *, actor: str, audit_steady: bool = True) -> OwnedReconcile:
    """Reconcile each owned VM on its own (one VM's trouble never stops the rest). The service's
    periodic run passes ``audit_steady=False``: a VM where nothing needed doing is not audited."""
    vmids, absent = owned_vmids(services)
    reports, failed = Reconciler.build(services, actor=actor).run_many(vmids, audit_steady=audit_steady)
    failed += [{"vm_id": vmid, "error": str(UnknownVmError(vmid))} for vmid in absent]
    return OwnedReconcile(vmids=sorted([*vmids, *absent]), reports=reports, failed=failed)
