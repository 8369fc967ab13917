"""Persistence: tables, sessions and migrations."""

from runtime.db.models import (
    ApiToken,
    AuditEntry,
    Base,
    Checkpoint,
    HealthSample,
    Job,
    JobState,
    Lease,
    Machine,
    Project,
    Worker,
)
from runtime.db.session import Database

__all__ = [
    "ApiToken",
    "AuditEntry",
    "Base",
    "Checkpoint",
    "Database",
    "HealthSample",
    "Job",
    "JobState",
    "Lease",
    "Machine",
    "Project",
    "Worker",
]
