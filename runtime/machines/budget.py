"""Budget math: what a machine costs, accrued from the running time Proxmox reports, and the report.

Pure functions (tested on numbers the test chooses) plus one read of the rows for ``report``.

- A running machine costs ``cores * HUB_COST_PER_CORE_HOUR + memory GiB * HUB_COST_PER_GIB_HOUR_MEMORY``
  per hour of running time; every machine that exists (running or stopped) costs
  ``disk GiB * HUB_COST_PER_GIB_HOUR_DISK`` per hour, since its disk occupies storage either way.
  Sizes are PVE's: a disk of N "G" is N GiB (qemu-server's size suffixes are binary).
- Running time comes from Proxmox: the VM's ``uptime`` in ``/cluster/resources``. Between two
  samples a VM ran ``uptime - previous uptime`` seconds if it did not restart, else ``uptime``
  seconds (it booted since). Never more than the wall time between the samples, so a VM whose
  uptime jumps (a clock change, a migration) is not over-charged.
- Burn rate: the cost per hour of what runs now. Projected exhaustion: now + remaining / burn rate.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select

from runtime.db import Database
from runtime.db.models import Machine, Project
from runtime.machines.quotas import usage
from runtime.machines.records import HOLDING, Limits, MachineStatus, iso
from runtime.settings import Settings

HOUR = 3600.0


@dataclass(frozen=True, slots=True)
class Rates:
    core_hour: float
    memory_gib_hour: float
    disk_gib_hour: float

    @classmethod
    def of(cls, settings: Settings) -> Rates:
        return cls(
            settings.cost_per_core_hour, settings.cost_per_gib_hour_memory, settings.cost_per_gib_hour_disk
        )

    def running_per_hour(self, *, cores: int, memory_mib: int) -> float:
        return cores * self.core_hour + memory_mib / 1024 * self.memory_gib_hour

    def existing_per_hour(self, *, disk_gb: int) -> float:
        return disk_gb * self.disk_gib_hour


def running_seconds(*, previous_uptime: int, uptime: int, wall_seconds: float) -> float:
    """Seconds a VM ran between two samples, from its uptimes (see the module docstring)."""
    if uptime <= 0:
        return 0.0
    ran = uptime - previous_uptime if uptime >= previous_uptime else uptime
    return float(max(0.0, min(ran, wall_seconds)))


def accrued(
    rates: Rates, *, cores: int, memory_mib: int, disk_gb: int, ran_seconds: float, existed_seconds: float
) -> float:
    return (
        rates.running_per_hour(cores=cores, memory_mib=memory_mib) * ran_seconds / HOUR
        + rates.existing_per_hour(disk_gb=disk_gb) * max(0.0, existed_seconds) / HOUR
    )


def projected_exhaustion(
    *, budget: float | None, spent: float, burn_rate: float, now: datetime
) -> datetime | None:
    if budget is None or burn_rate <= 0:
        return None
    remaining = budget - spent
    if remaining <= 0:
        return now
    return now + timedelta(hours=remaining / burn_rate)


def report(db: Database, settings: Settings, *, now: datetime, project: str | None = None) -> dict[str, Any]:
    """``{"projects": [{"project", "limits", "usage", "budget", "spent", "remaining", "burn_rate",
    "projected_exhaustion", "over_budget_since", "running"}]}`` (hubctl budget show --json)."""
    rates = Rates.of(settings)
    out: list[dict[str, Any]] = []
    with db.session() as s:
        query = select(Project).order_by(Project.name)
        if project is not None:
            query = query.where(Project.name == project)
        for p in s.scalars(query):
            machines = list(
                s.scalars(select(Machine).where(Machine.project == p.name, Machine.status.in_(HOLDING)))
            )
            running = [m for m in machines if m.status == MachineStatus.RUNNING.value]
            burn = sum(rates.running_per_hour(cores=m.cores, memory_mib=m.memory_mib) for m in running) + sum(
                rates.existing_per_hour(disk_gb=m.disk_gb) for m in machines
            )
            spent = float(p.spent or 0.0)
            exhaustion = projected_exhaustion(budget=p.budget, spent=spent, burn_rate=burn, now=now)
            out.append(
                {
                    "project": p.name,
                    "limits": Limits(
                        p.max_cores, p.max_memory_mib, p.max_disk_gb, p.max_machines
                    ).to_public(),
                    "usage": usage(s, project=p.name).to_public(),
                    "budget": p.budget,
                    "spent": round(spent, 6),
                    "remaining": None if p.budget is None else round(p.budget - spent, 6),
                    "burn_rate": round(burn, 6),
                    "projected_exhaustion": iso(exhaustion),
                    "over_budget_since": iso(p.over_budget_since),
                    "running": len(running),
                }
            )
    return {"projects": out}
