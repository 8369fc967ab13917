"""The Proxmox VE layer: the only code that knows API paths and PVE's error wording.

The client (``ProxmoxAccess``, ``ProxmoxClient``, ``Snapshot``) is imported on first use of one of
those names: it loads requests, urllib3, proxmoxer and tenacity (~7 MiB and ~140 modules), which a
process that only needs the error types, ``VmRef`` or the task rule (the API's error table, a
``serve`` without Proxmox, most CLI reads) would otherwise keep for its whole life.
"""

from typing import TYPE_CHECKING, Any

from hubcore.proxmox.errors import (
    ProxmoxAuthError,
    ProxmoxBadRequest,
    ProxmoxConflict,
    ProxmoxError,
    ProxmoxLockedError,
    ProxmoxNotFound,
    ProxmoxPermissionError,
    ProxmoxQuorumError,
    ProxmoxServerError,
    ProxmoxTaskFailed,
    ProxmoxTaskTimeout,
    ProxmoxTLSError,
    ProxmoxUnreachable,
)
from hubcore.proxmox.tasks import TaskResult, task_succeeded
from hubcore.proxmox.vms import VmRef, VmResource, VmStatus

if TYPE_CHECKING:
    from hubcore.proxmox.client import ProxmoxAccess, ProxmoxClient, Snapshot

_CLIENT_NAMES = frozenset({"ProxmoxAccess", "ProxmoxClient", "Snapshot"})


def __getattr__(name: str) -> Any:
    """``from hubcore.proxmox import ProxmoxClient`` imports the client module then (PEP 562)."""
    if name in _CLIENT_NAMES:
        from hubcore.proxmox import client

        return getattr(client, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ProxmoxAccess",
    "ProxmoxAuthError",
    "ProxmoxBadRequest",
    "ProxmoxClient",
    "ProxmoxConflict",
    "ProxmoxError",
    "ProxmoxLockedError",
    "ProxmoxNotFound",
    "ProxmoxPermissionError",
    "ProxmoxQuorumError",
    "ProxmoxServerError",
    "ProxmoxTLSError",
    "ProxmoxTaskFailed",
    "ProxmoxTaskTimeout",
    "ProxmoxUnreachable",
    "Snapshot",
    "TaskResult",
    "VmRef",
    "VmResource",
    "VmStatus",
    "task_succeeded",
]
