"""The runtime's error hierarchy.

Every expected failure is a ``HubError``. The CLI maps ``UsageError`` (bad input, bad settings) to
exit code 2 and every other ``HubError`` to exit code 1, printing one line; anything else is a bug
and keeps its traceback. The Proxmox client's own typed errors live in ``runtime.proxmox.errors``
and derive from ``OperationError``.
"""

from __future__ import annotations


class HubError(Exception):
    """An expected failure, reported to the operator as one line."""


class UsageError(HubError):
    """Bad usage, bad input or bad settings: exit code 2."""


class SettingsError(UsageError):
    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(f"{setting}: {message}")


class NotFoundError(UsageError):
    """The operator named something that does not exist (unknown checkpoint uuid, ...)."""


class OperationError(HubError):
    """The operation was attempted and failed: exit code 1."""


class LockBusyError(OperationError):
    """Another process holds the lock for this VM and did not release it in time."""


class LockBackendError(OperationError):
    """The lock service (Redis) is configured but unreachable: we refuse rather than risk overlap."""


class DatabaseError(OperationError):
    """The database is unreachable or not migrated."""
