"""The Proxmox VE layer: the only code that knows API paths and PVE's error wording."""

from hubcore.proxmox.client import ProxmoxAccess, ProxmoxClient, Snapshot, TaskResult
from hubcore.proxmox.errors import (
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
    "ProxmoxAccess",
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
