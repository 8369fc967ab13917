"""Persistence: tables, sessions and migrations."""

from runtime.db.models import (
    ApiToken,
    AuditEntry,
    Base,
    Checkpoint,
    Job,
    JobState,
    Lease,
    Worker,
)
from runtime.db.session import Database

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Checkpoint",
    "Database",
    "Job",
    "JobState",
    "Lease",
    "Worker",
]
