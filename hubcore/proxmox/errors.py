"""Typed errors at the Proxmox API boundary.

The client turns every HTTP status, transport failure and task exit status into one of these, so
nothing above ``hubcore.proxmox`` ever parses PVE's wording. ``transient`` says whether the client's
retry loop may try again: connection trouble, 5xx answers and a config lock held by another task
are; refused credentials, missing permissions, bad requests, lost quorum and a VM in the wrong state
are not.
"""

from __future__ import annotations

from hubcore.errors import OperationError


class ProxmoxError(OperationError):
    transient: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class ProxmoxUnreachable(ProxmoxError):
    """No answer: connection refused or reset, timeout, node offline (595)."""

    transient = True


class ProxmoxTLSError(ProxmoxError):
    """The API's certificate did not verify against the configured CA: never retried."""


class ProxmoxServerError(ProxmoxError):
    """A 5xx answer that names no specific condition."""

    transient = True


class ProxmoxAuthError(ProxmoxError):
    """401: the API token is unknown, expired or malformed."""


class ProxmoxPermissionError(ProxmoxError):
    """403: the token lacks a privilege on the path."""


class ProxmoxBadRequest(ProxmoxError):
    """400: PVE rejected the parameters."""


class ProxmoxNotFound(ProxmoxError):
    """The VM, snapshot or task does not exist."""


class ProxmoxConflict(ProxmoxError):
    """The VM is not in the state the request needs: not running (reboot, resume), running (destroy),
    already running (start inside its task), or the new id is taken (clone). Retrying cannot help;
    the caller reads the VM's state and decides."""


class ProxmoxQuorumError(ProxmoxError):
    """The cluster lost quorum: /etc/pve is read-only, so no snapshot can be taken now."""


class ProxmoxLockedError(ProxmoxError):
    """The VM's config lock is held by another task (backup, clone, another snapshot...)."""

    transient = True


class ProxmoxTaskFailed(ProxmoxError):
    """A task ended with an exit status other than ``OK`` or ``WARNINGS: N``."""

    def __init__(self, message: str, *, upid: str, exitstatus: str) -> None:
        self.upid = upid
        self.exitstatus = exitstatus
        super().__init__(message)


class ProxmoxTaskTimeout(ProxmoxError):
    """A task was still running when our bound ran out. It may still finish: reconcile decides."""

    def __init__(self, message: str, *, upid: str) -> None:
        self.upid = upid
        super().__init__(message)
