"""Where a VM is: its node, resolved from the cluster, never assumed.

A VM migrates between nodes (by an operator, by HA), and a caller may name any VM, not only the
Hub's own. Every operation on a VM therefore starts from a ``VmRef`` resolved here through
``/cluster/resources?type=vm``: one request lists every VM the token may see, with its node, so one
answer serves many lookups. It is cached briefly (a migration takes longer than the cache lives), and
a cache miss, or a node that turns out wrong, is answered by asking again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from runtime.errors import NotFoundError

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxClient, VmRef, VmResource

# Long enough that a fleet operation over hundreds of VMs lists the cluster once, short enough that
# a VM migrated a moment ago is found on its new node at the next operation.
CACHE_SECONDS = 5.0


class UnknownVmError(NotFoundError):
    """No VM with this id is visible to the Hub's token (it does not exist, or it is not ours to see)."""

    def __init__(self, vmid: int) -> None:
        self.vmid = vmid
        super().__init__(f"no VM {vmid} in the cluster (or the Hub's token may not see it)")


class VmLocator:
    def __init__(
        self,
        proxmox: ProxmoxClient,
        *,
        hub_node: str | None = None,
        ttl: float = CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.proxmox = proxmox
        # The node HUB_NODE names: informational only (a hint in messages); the cluster decides.
        self.hub_node = hub_node
        self._ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        self._cached: dict[int, VmResource] = {}
        self._cached_at: float | None = None

    def locate(self, vmid: int) -> VmRef:
        """The VM's current node. Raises UnknownVmError when the cluster does not list it."""
        return self.resource(vmid).ref

    def resource(self, vmid: int) -> VmResource:
        with self._lock:
            refreshed = self._stale()
            if refreshed:
                self._refresh()
            found = self._cached.get(vmid)
            if found is None and not refreshed:
                # Created (or made visible) since the cached listing: ask once more before saying no.
                self._refresh()
                found = self._cached.get(vmid)
        if found is None:
            raise UnknownVmError(vmid)
        return found

    def all(self, *, fresh: bool = False) -> list[VmResource]:
        """Every VM the token may see (one request, shared with ``locate`` through the cache)."""
        with self._lock:
            if fresh or self._stale():
                self._refresh()
            return list(self._cached.values())

    def forget(self) -> None:
        """Drop the cache: the next lookup asks the cluster (after a node turned out to be wrong)."""
        with self._lock:
            self._cached_at = None

    def _stale(self) -> bool:
        return self._cached_at is None or self._clock() - self._cached_at > self._ttl

    def _refresh(self) -> None:
        self._cached = {vm.vmid: vm for vm in self.proxmox.cluster_vms()}
        self._cached_at = self._clock()
