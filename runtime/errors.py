"""The runtime's error hierarchy.

Every expected failure is a ``HubError``. The CLI maps ``UsageError`` (bad input, bad settings) to
exit code 2 and every other ``HubError`` to exit code 1, printing one line; anything else is a bug
and keeps its traceback. The base classes live in ``hubcore.errors`` (shared with hubinfra); the
Proxmox client's typed errors live in ``hubcore.proxmox.errors`` and derive from ``OperationError``.
"""

from __future__ import annotations

from hubcore.errors import HubError, OperationError, UsageError

__all__ = [
    "DatabaseError",
    "HubError",
    "LockBackendError",
    "LockBusyError",
    "NotFoundError",
    "OperationError",
    "SettingsError",
    "UsageError",
]


class SettingsError(UsageError):
    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {message}")


class NotFoundError(UsageError):
    """The operator named something that does not exist (unknown checkpoint uuid, ...)."""


class LockBusyError(OperationError):
    """Another process holds the lock for this VM and did not release it in time."""


class LockBackendError(OperationError):
    """The lock service (Redis) is configured but unreachable: we refuse rather than risk overlap."""


class DatabaseError(OperationError):
    """The database is unreachable or not migrated."""
