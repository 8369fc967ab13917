"""Persistence: tables, sessions and migrations."""

from runtime.db.models import AuditEntry, Base, Checkpoint, CheckpointKind, CheckpointStatus
from runtime.db.session import Database

__all__ = ["AuditEntry", "Base", "Checkpoint", "CheckpointKind", "CheckpointStatus", "Database"]
