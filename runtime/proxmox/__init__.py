"""The Proxmox VE layer: the only code that knows API paths and PVE's error wording."""

from runtime.proxmox.client import ProxmoxClient, Snapshot, TaskResult
from runtime.proxmox.errors import (
    ProxmoxAuthError,
    ProxmoxBadRequest,
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

__all__ = [
    "ProxmoxAuthError",
    "ProxmoxBadRequest",
    "ProxmoxClient",
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
]
