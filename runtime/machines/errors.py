"""The machines domain's errors. Each says, in one line, what was refused and why."""

from __future__ import annotations

from runtime.errors import NotFoundError, OperationError, UsageError


class MachineError(OperationError):
    """A lifecycle step was attempted and failed (the Proxmox cause is attached)."""


class QuotaExceeded(OperationError):
    """A request would exceed a project's or the Hub's limit: refused before any Proxmox call.

    An operation error (exit 1, HTTP 409): the request was well-formed, the capacity is not there."""

    def __init__(self, message: str, *, limit: str, requested: float, used: float, allowed: float) -> None:
        self.limit = limit
        self.requested = requested
        self.used = used
        self.allowed = allowed
        super().__init__(message)


class BudgetExceeded(QuotaExceeded):
    """The project has spent its cost budget: no new machines."""


class NotOwnedError(MachineError):
    """The VM lacks the Hub's marker (tag and uuid line): the Hub never acts on it."""


class UnknownProject(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no project named {name!r} (hubctl project list shows them)")


class UnknownMachine(NotFoundError):
    pass


class MachineUsageError(UsageError):
    pass
