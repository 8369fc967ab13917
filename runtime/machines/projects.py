"""Projects: the unit of ownership and accounting. Rows only; no Proxmox call here.

A project has limits (cores, memory, disk, machine count; unset means no limit), a cost budget,
and optionally a checkpoint schedule (cron in UTC, validated by ``hubcore.contract``'s rule, the
same one the Hub's own schedule passes) with a retention rule for its machines' checkpoints (the
``keep_*`` fields of ``runtime.settings.RetentionRule``). The scheduler reads ``schedules()``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError
from sqlalchemy import select

from hubcore.contract import validate_schedule
from runtime import audit
from runtime.db import Database
from runtime.db.models import Project
from runtime.errors import UsageError
from runtime.machines.errors import UnknownProject
from runtime.machines.records import PROJECT_NAME, ProjectRecord
from runtime.settings import RetentionRule

_UNSET: Any = object()
_LIMITS = ("max_cores", "max_memory_mib", "max_disk_gb", "max_machines")


def check_name(name: str) -> str:
    if not PROJECT_NAME.fullmatch(name):
        raise UsageError(
            f"project name {name!r}: lowercase letters, digits and '-', starting with a letter, at most 32 "
            "(it becomes the PVE tag hub-project-<name>)"
        )
    return name


def check_schedule(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return validate_schedule(value)
    except ValueError as exc:
        raise UsageError(f"checkpoint schedule: {exc}") from None


def check_retention(value: dict[str, Any] | None) -> dict[str, int] | None:
    if value is None:
        return None
    try:
        return RetentionRule.model_validate(value).model_dump()
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "retention"
        raise UsageError(f"retention: {where}: {err['msg']}") from None


def check_amount(name: str, value: float | int | None) -> None:
    if value is None:
        return
    if value != value or value < 0 or value > 1e12:  # NaN, negative, absurd
        raise UsageError(f"{name}: must be a number from 0 to 1e12")


class ProjectStore:
    def __init__(
        self, db: Database, *, actor: str = "hubctl", clock: Callable[[], datetime] | None = None
    ) -> None:
        self.db = db
        self.actor = actor
        self.clock = clock or (lambda: datetime.now(UTC))

    def create(
        self,
        name: str,
        *,
        cores: int | None = None,
        memory_mib: int | None = None,
        disk_gb: int | None = None,
        machines: int | None = None,
        budget: float | None = None,
        checkpoint_schedule: str | None = None,
        retention: dict[str, Any] | None = None,
    ) -> ProjectRecord:
        check_name(name)
        for label, value in (
            ("cores", cores),
            ("memory-mib", memory_mib),
            ("disk-gb", disk_gb),
            ("machines", machines),
        ):
            check_amount(label, value)
        check_amount("budget", budget)
        schedule = check_schedule(checkpoint_schedule)
        rule = check_retention(retention)
        with self.db.session() as s:
            if s.get(Project, name) is not None:
                raise UsageError(f"project {name!r} exists already (hubctl project set changes it)")
            row = Project(
                name=name,
                max_cores=cores,
                max_memory_mib=memory_mib,
                max_disk_gb=disk_gb,
                max_machines=machines,
                budget=budget,
                spent=0.0,
                checkpoint_schedule=schedule,
                retention=rule,
                created_at=self.clock(),
            )
            s.add(row)
            s.flush()
            record = ProjectRecord.of(row)
            audit.record(
                s,
                actor=self.actor,
                action="project.create",
                target=name,
                outcome="completed",
                details=record.to_public(),
            )
        return record

    def set(self, name: str, **changes: Any) -> ProjectRecord:
        """Change limits, budget, schedule or retention; a value of None clears it (no limit)."""
        allowed = {*_LIMITS, "budget", "checkpoint_schedule", "retention"}
        unknown = set(changes) - allowed
        if unknown:
            raise UsageError(f"project set: unknown field(s) {', '.join(sorted(unknown))}")
        for key, value in changes.items():
            if key in _LIMITS or key == "budget":
                check_amount(key.removeprefix("max_").replace("_", "-"), value)
        if "checkpoint_schedule" in changes:
            changes["checkpoint_schedule"] = check_schedule(changes["checkpoint_schedule"])
        if "retention" in changes:
            changes["retention"] = check_retention(changes["retention"])
        with self.db.session() as s:
            row = s.get(Project, name)
            if row is None:
                raise UnknownProject(name)
            for key, value in changes.items():
                setattr(row, key, value)
            if "budget" in changes and (row.budget is None or row.spent < row.budget):
                row.over_budget_since = None  # a raised budget ends the grace period
            s.flush()
            record = ProjectRecord.of(row)
            audit.record(
                s,
                actor=self.actor,
                action="project.set",
                target=name,
                outcome="completed",
                details={k: v for k, v in changes.items()},
            )
        return record

    def show(self, name: str) -> ProjectRecord:
        with self.db.session() as s:
            row = s.get(Project, name)
            if row is None:
                raise UnknownProject(name)
            return ProjectRecord.of(row)

    def list(self) -> list[ProjectRecord]:
        with self.db.session() as s:
            return [ProjectRecord.of(r) for r in s.scalars(select(Project).order_by(Project.name))]

    def schedules(self) -> list[tuple[str, str]]:
        """(project, cron) for every project with a checkpoint schedule: what the scheduler runs
        (a fleet checkpoint of the project's machines, cron in UTC)."""
        with self.db.session() as s:
            rows = s.execute(
                select(Project.name, Project.checkpoint_schedule)
                .where(Project.checkpoint_schedule.is_not(None))
                .order_by(Project.name)
            ).all()
        return [(name, cron) for name, cron in rows if cron and cron != "manual"]
