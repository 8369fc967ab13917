"""The Proxmox VE layer: the only code that knows API paths and PVE's error wording."""

from hubcore.proxmox.client import ProxmoxAccess, ProxmoxClient, Snapshot
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
