"""Database tables (SQLAlchemy 2.0). The schema itself is owned by the Alembic migrations."""

from __future__ import annotations

import uuid as uuidlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import JSON, Boolean, DateTime, Dialect, Float, Index, Integer, String, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on the way in and out, also on SQLite (which stores naive text)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Checkpoint(Base):
    """One checkpoint. ``kind`` and ``status`` hold the values of the enums in
    ``runtime.checkpoints.records``; the domain reads rows as ``CheckpointRecord``."""

    __tablename__ = "hub_checkpoints"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    vm_id: Mapped[int] = mapped_column(Integer, nullable=False)
    node: Mapped[str] = mapped_column(String(64), nullable=False)
    snapname: Mapped[str] = mapped_column(String(40), nullable=False)
    kind: Mapped[str] = mapped_column(String(20), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    reason: Mapped[str | None] = mapped_column(Text)
    upid: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    protected: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    label: Mapped[str | None] = mapped_column(String(32))
    vmstate: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)
    # Blessing (runtime/health/blessing.py): when the Hub proved healthy for the window after it; or
    # why it never will be (taken while degraded, not healthy through the window). Both null: pending.
    blessed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bless_refused: Mapped[str | None] = mapped_column(Text)

    __table_args__ = (
        Index("ix_hub_checkpoints_vm_status", "vm_id", "status"),
        Index("ix_hub_checkpoints_created_at", "created_at"),
        Index("ux_hub_checkpoints_vm_snapname", "vm_id", "snapname", unique=True),
    )


class AuditEntry(Base):
    """Append-only: the migrations install triggers that refuse UPDATE and DELETE."""

    __tablename__ = "hub_audit"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    action: Mapped[str] = mapped_column(String(64), nullable=False)
    target: Mapped[str | None] = mapped_column(String(256))
    outcome: Mapped[str] = mapped_column(String(16), nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)

    __table_args__ = (Index("ix_hub_audit_at", "at"), Index("ix_hub_audit_target", "target"))

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": _iso(self.at),
            "actor": self.actor,
            "action": self.action,
            "target": self.target,
            "outcome": self.outcome,
            "details": self.details,
        }


class HealthSample(Base):
    """One evaluation of the health loop: the instantaneous verdict, the settled one (hysteresis), and
    each check's status. Blessing reads it; it is pruned after ``health_history_days``."""

    __tablename__ = "hub_health_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    instant: Mapped[str] = mapped_column(String(16), nullable=False)
    settled: Mapped[str] = mapped_column(String(16), nullable=False)
    # {check name: status}, and the detail lines of the checks that were not healthy.
    checks: Mapped[dict[str, str]] = mapped_column(JSON, nullable=False, default=dict)
    problems: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)

    __table_args__ = (Index("ix_hub_health_history_at", "at"),)


class JobState(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Job(Base):
    """A long operation requested through the API or the scheduler. The row is the job's truth: the
    queue only carries its id, so state, progress, result and error survive any restart."""

    __tablename__ = "hub_jobs"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), nullable=False)
    params: Mapped[dict[str, Any]] = mapped_column(JSON, nullable=False, default=dict)
    state: Mapped[str] = mapped_column(String(16), nullable=False)
    actor: Mapped[str] = mapped_column(String(128), nullable=False)
    progress: Mapped[list[str]] = mapped_column(JSON, nullable=False, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # The worker (hub_workers.id) that claimed it: a running job is interrupted only when that
    # worker's heartbeat is stale (runtime/jobs/workers.py).
    worker_id: Mapped[str | None] = mapped_column(String(36))

    __table_args__ = (Index("ix_hub_jobs_state", "state"), Index("ix_hub_jobs_created_at", "created_at"))

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "params": self.params,
            "state": self.state,
            "actor": self.actor,
            "progress": self.progress,
            "result": self.result,
            "error": self.error,
            "created_at": _iso(self.created_at),
            "started_at": _iso(self.started_at),
            "finished_at": _iso(self.finished_at),
        }


class ApiToken(Base):
    """API bearer tokens. Only a SHA-256 of the secret part is stored: the tokens are 256-bit random
    values, so a slow password hash would add nothing but latency to every request."""

    __tablename__ = "hub_api_tokens"

    id: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    secret_sha256: Mapped[str] = mapped_column(String(64), nullable=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def to_public(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "id": self.id,
            "created_at": _iso(self.created_at),
            "revoked_at": _iso(self.revoked_at),
            "last_used_at": _iso(self.last_used_at),
        }


class Lease(Base):
    """A role held by one process at a time (runtime/leases.py); it lapses when not renewed."""

    __tablename__ = "hub_leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(256), nullable=False)
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class RecoveryEvent(Base):
    """A sentinel's journal entry, imported from the Hub VM's description (runtime/sentinel/hub_import.py):
    what happened to the Hub from outside, including after the checkpoint its database came from."""

    __tablename__ = "hub_recovery_events"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    vm_id: Mapped[int] = mapped_column(Integer, nullable=False)
    at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(32), nullable=False)
    checkpoint: Mapped[str | None] = mapped_column(String(64), nullable=True)
    outcome: Mapped[str] = mapped_column(String(32), nullable=False)
    detail: Mapped[str] = mapped_column(Text, nullable=False)
    imported_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    def to_public(self) -> dict[str, Any]:
        return {
            "at": _iso(self.at),
            "kind": self.kind,
            "checkpoint": self.checkpoint,
            "outcome": self.outcome,
            "detail": self.detail,
        }


class Worker(Base):
    """A process that runs jobs (``hubctl serve`` or ``hubctl worker``), alive while it heartbeats."""

    __tablename__ = "hub_workers"

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    host: Mapped[str] = mapped_column(String(255), nullable=False)
    pid: Mapped[int] = mapped_column(Integer, nullable=False)
    token: Mapped[str] = mapped_column(String(256), nullable=False)
    role: Mapped[str] = mapped_column(String(16), nullable=False)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    heartbeat_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)

    __table_args__ = (Index("ix_hub_workers_heartbeat_at", "heartbeat_at"),)

    def to_public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "host": self.host,
            "pid": self.pid,
            "role": self.role,
            "started_at": _iso(self.started_at),
            "heartbeat_at": _iso(self.heartbeat_at),
        }


def new_uuid() -> str:
    return str(uuidlib.uuid4())


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


class Project(Base):
    """A unit of ownership and accounting for task machines (runtime.machines.projects).

    ``spent`` is the cost accrued so far (runtime.machines.budget); ``over_budget_since`` starts the
    grace period after which a project over its budget has its machines stopped. The row is also the
    lock a quota reservation takes (``SELECT ... FOR UPDATE``), so two reservations for one project
    are decided one after the other."""

    __tablename__ = "hub_projects"

    name: Mapped[str] = mapped_column(String(32), primary_key=True)
    max_cores: Mapped[int | None] = mapped_column(Integer)
    max_memory_mib: Mapped[int | None] = mapped_column(Integer)
    max_disk_gb: Mapped[int | None] = mapped_column(Integer)
    max_machines: Mapped[int | None] = mapped_column(Integer)
    budget: Mapped[float | None] = mapped_column(Float)
    spent: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    checkpoint_schedule: Mapped[str | None] = mapped_column(String(128))
    retention: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    over_budget_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)


class Machine(Base):
    """A task machine: a VM the Hub cloned into its pool for a project (runtime.machines.records).

    ``step`` is how far create got (reserved, allocated, cloned, configured, started), so a create
    repeated after a crash resumes there; ``vm_id`` is written before the clone is asked for, so the
    half-made VM is found by its id and proven ours by the uuid line in its description."""

    __tablename__ = "hub_machines"

    uuid: Mapped[str] = mapped_column(String(36), primary_key=True)
    name: Mapped[str] = mapped_column(String(63), nullable=False)
    project: Mapped[str] = mapped_column(String(32), nullable=False)
    vm_id: Mapped[int | None] = mapped_column(Integer)
    node: Mapped[str | None] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    step: Mapped[str] = mapped_column(String(20), nullable=False)
    cores: Mapped[int] = mapped_column(Integer, nullable=False)
    memory_mib: Mapped[int] = mapped_column(Integer, nullable=False)
    disk_gb: Mapped[int] = mapped_column(Integer, nullable=False)
    network: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, nullable=False)
    destroyed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Accounting samples from the cluster (runtime.machines.budget): the last uptime seen and when.
    last_uptime: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    sampled_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    cpu: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    cost: Mapped[float] = mapped_column(Float, nullable=False, default=0.0)
    idle_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    idle: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False)

    __table_args__ = (
        Index("ix_hub_machines_project_status", "project", "status"),
        Index("ix_hub_machines_vm_id", "vm_id"),
        Index("ix_hub_machines_name", "name"),
    )
