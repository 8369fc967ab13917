"""The base of every expected failure, shared by the runtime, the sentinel and hubinfra.

``UsageError`` is bad usage, input or settings (the CLI's exit code 2); ``OperationError`` is an
operation that was attempted and failed (exit code 1). Anything that is not a ``HubError`` is a bug.
"""

from __future__ import annotations


class HubError(Exception):
    """An expected failure, reported to the operator as one line."""


class UsageError(HubError):
    """Bad usage, bad input or bad settings: exit code 2."""


class OperationError(HubError):
    """The operation was attempted and failed: exit code 1."""
