"""Capacity reservation: a machine's cores, memory, disk and slot are taken in the database, in one
transaction, before any Proxmox call.

Two requests racing for the last slot (two processes, two API calls) must not both win. The check
and the insert of the machine row happen in one transaction that first serialises against every
other reservation:

- PostgreSQL: ``SELECT ... FOR UPDATE`` on the project's row (two reservations for one project
  queue there), plus a transaction-scoped advisory lock for the Hub-wide limits (``HUB_POOL_MAX_*``
  span every project, so the project row alone would not order two projects' requests);
- SQLite: ``BEGIN IMMEDIATE`` takes the database's write lock before the first read, so the second
  transaction reads only after the first committed.

The loser sees the winner's row and is refused with the limit and the numbers. Usage counts every
machine that holds capacity (``records.HOLDING``: creating, running, stopped, failed); a destroyed or
missing machine holds none.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from runtime import audit, failpoints
from runtime.db import Database
from runtime.db.models import Machine, Project, new_uuid
from runtime.errors import UsageError
from runtime.machines.errors import BudgetExceeded, QuotaExceeded, UnknownProject
from runtime.machines.records import HOLDING, CreateStep, Limits, MachineRecord, MachineStatus, Usage
from runtime.settings import Settings

# Any constant: the advisory lock that orders reservations against the Hub-wide limits.
_POOL_LOCK_KEY = 0x4855_424D  # "HUBM"


@dataclass(frozen=True, slots=True)
class Request:
    project: str
    name: str
    cores: int
    memory_mib: int
    disk_gb: int
    network: str


def pool_limits(settings: Settings) -> Limits:
    return Limits(
        cores=settings.pool_max_cores,
        memory_mib=settings.pool_max_memory_mib,
        disk_gb=settings.pool_max_disk_gb,
        machines=settings.pool_max_machines,
    )


def usage(session: Session, *, project: str | None = None) -> Usage:
    """Capacity held by machines (of one project, or of the whole Hub)."""
    query = select(
        func.coalesce(func.sum(Machine.cores), 0),
        func.coalesce(func.sum(Machine.memory_mib), 0),
        func.coalesce(func.sum(Machine.disk_gb), 0),
        func.count(),
    ).where(Machine.status.in_(HOLDING))
    if project is not None:
        query = query.where(Machine.project == project)
    cores, memory, disk, count = session.execute(query).one()
    return Usage(int(cores), int(memory), int(disk), int(count))


def check(owner: str, limits: Limits, used: Usage, req: Request) -> None:
    """Raise QuotaExceeded for the first limit the request would exceed, naming it and the numbers."""
    wanted = (
        ("machines", limits.machines, used.machines, 1),
        ("cores", limits.cores, used.cores, req.cores),
        ("memory-mib", limits.memory_mib, used.memory_mib, req.memory_mib),
        ("disk-gb", limits.disk_gb, used.disk_gb, req.disk_gb),
    )
    for limit, allowed, in_use, asked in wanted:
        if allowed is not None and in_use + asked > allowed:
            raise QuotaExceeded(
                f"{owner}: {limit} limit {allowed} would be exceeded: {in_use} in use + {asked} requested "
                f"= {in_use + asked}",
                limit=f"{owner} {limit}",
                requested=asked,
                used=in_use,
                allowed=allowed,
            )


def reserve(db: Database, settings: Settings, req: Request, *, actor: str, now: datetime) -> MachineRecord:
    """Check every limit and the budget and insert the machine row, as one serialised transaction."""
    failpoints.reached("machine.reserve_begin")
    with db.session() as s:
        if db.is_sqlite:
            # Take the write lock before reading: the check and the insert are then one step.
            s.execute(text("BEGIN IMMEDIATE"))
        else:
            s.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _POOL_LOCK_KEY})
        project = s.scalars(select(Project).where(Project.name == req.project).with_for_update()).first()
        if project is None:
            raise UnknownProject(req.project)
        taken = s.scalar(
            select(func.count()).where(
                Machine.name == req.name, Machine.status != MachineStatus.DESTROYED.value
            )
        )
        if taken:
            raise UsageError(f"a machine named {req.name!r} exists already (names are unique)")
        if project.budget is not None and project.spent >= project.budget:
            raise BudgetExceeded(
                f"project {project.name!r}: budget {project.budget:g} spent ({project.spent:.2f}); "
                "no new machines until it is raised",
                limit=f"project {project.name!r} budget",
                requested=0,
                used=project.spent,
                allowed=project.budget,
            )
        limits = Limits(project.max_cores, project.max_memory_mib, project.max_disk_gb, project.max_machines)
        check(f"project {project.name!r}", limits, usage(s, project=project.name), req)
        check("the Hub's pool", pool_limits(settings), usage(s), req)
        # Checked, not yet written: without the serialisation above, a second request paused here
        # would read the same usage and both would win (tests/runtime/machines/test_quotas.py).
        failpoints.reached("machine.reserving")
        row = Machine(
            uuid=new_uuid(),
            name=req.name,
            project=req.project,
            status=MachineStatus.CREATING.value,
            step=CreateStep.RESERVED.value,
            cores=req.cores,
            memory_mib=req.memory_mib,
            disk_gb=req.disk_gb,
            network=req.network,
            created_at=now,
            updated_at=now,
            last_uptime=0,
            cpu=0.0,
            cost=0.0,
            idle=False,
        )
        s.add(row)
        s.flush()
        audit.record(
            s,
            actor=actor,
            action="machine.reserve",
            target=row.uuid,
            outcome="completed",
            details={
                "project": req.project,
                "name": req.name,
                "cores": req.cores,
                "memory_mib": req.memory_mib,
                "disk_gb": req.disk_gb,
            },
            at=now,
        )
        return MachineRecord.of(row)


def refuse_audited(db: Database, exc: QuotaExceeded, req: Request, *, actor: str) -> None:
    """The refusal goes into the audit trail too (its own transaction: the reservation rolled back)."""
    with db.session() as s:
        audit.record(
            s,
            actor=actor,
            action="machine.reserve",
            target=req.project,
            outcome="refused",
            details={"name": req.name, "limit": exc.limit, "reason": str(exc)},
        )
