"""Persistence: tables, sessions and migrations."""

from runtime.db.models import (
    ApiToken,
    AuditEntry,
    Base,
    Checkpoint,
    CheckpointKind,
    CheckpointStatus,
    Job,
    JobState,
)
from runtime.db.session import Database

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Checkpoint",
    "CheckpointKind",
    "CheckpointStatus",
    "Database",
    "Job",
    "JobState",
]
