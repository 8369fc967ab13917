"""The sentinel's errors (exit 1 / exit 2 at the CLI, through runtime.cli's one mapping)."""

from __future__ import annotations

from runtime.errors import OperationError, UsageError


class SentinelError(OperationError):
    """A recovery step or a read of the Hub's state failed."""


class LeaseHeld(SentinelError):
    """Another sentinel holds the recovery lease on the Hub VM: it acts, this one does not."""


class SentinelUsageError(UsageError):
    """The operator asked for something that cannot be (an unknown checkpoint, a foreign snapshot)."""
