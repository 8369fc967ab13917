"""Budget math on numbers the test chooses, and a project over budget: warned, then its machines
stopped after the grace period, and no new machine."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runtime import audit
from runtime.machines.budget import Rates, accrued, projected_exhaustion, running_seconds
from runtime.machines.cluster_sync import sync_machines
from runtime.machines.lifecycle import MachineService
from runtime.machines.projects import ProjectStore
from tests.runtime.machines.conftest import machine_env
from tests.support.hubenv import one_line_error


@pytest.mark.parametrize(
    ("previous", "uptime", "wall", "ran"),
    [
        (100, 400, 300.0, 300.0),  # same boot: the difference
        (4000, 50, 300.0, 50.0),  # rebooted since: all of the new uptime
        (0, 10_000, 300.0, 300.0),  # never more than the wall time between samples
        (100, 0, 300.0, 0.0),  # stopped
    ],
)
def test_running_seconds(previous: int, uptime: int, wall: float, ran: float) -> None:
    assert running_seconds(previous_uptime=previous, uptime=uptime, wall_seconds=wall) == ran


def test_accrual_and_exhaustion() -> None:
    rates = Rates(core_hour=0.5, memory_gib_hour=0.25, disk_gib_hour=0.01)
    # 2 cores and 4 GiB for half an hour running, 100 GiB of disk for a whole hour.
    cost = accrued(rates, cores=2, memory_mib=4096, disk_gb=100, ran_seconds=1800, existed_seconds=3600)
    assert cost == pytest.approx((2 * 0.5 + 4 * 0.25) * 0.5 + 100 * 0.01)
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert projected_exhaustion(budget=10, spent=4, burn_rate=2, now=now) == now + timedelta(hours=3)
    assert projected_exhaustion(budget=10, spent=4, burn_rate=0, now=now) is None
    assert projected_exhaustion(budget=None, spent=4, burn_rate=2, now=now) is None


def test_over_budget_warned_then_stopped_after_grace(
    cluster: Any, fakepve_cafile: str, tmp_path: Path, sqlite_url: str
) -> None:
    env = machine_env(
        cluster,
        fakepve_cafile,
        tmp_path,
        sqlite_url,
        HUB_COST_PER_CORE_HOUR="1",
        HUB_BUDGET_GRACE_SECONDS="600",
    )
    services = env.services()
    ProjectStore(services.ready_db()).create("ci", budget=1.5)
    m = MachineService.build_from(services, actor="test").create(project="ci", name="m1", cores=2)
    vm = cluster.vm(m.vm_id)
    vm.stats["uptime"] = 0
    t0 = datetime.now(UTC) + timedelta(seconds=1)
    sync_machines(env.services(), actor="test", clock=lambda: t0)
    report = env.run("budget", "show", "--project", "ci", "--json")
    [doc] = json.loads(report.stdout)["projects"]
    assert doc["burn_rate"] == 2.0 and doc["spent"] == 0 and doc["usage"]["cores"] == 2
    assert doc["projected_exhaustion"] is not None
    # An hour later Proxmox says it ran the hour: 2 cores x 1 h x 1 = 2.0 > 1.5.
    vm.stats["uptime"] = 3600
    t1 = t0 + timedelta(hours=1)
    first = sync_machines(env.services(), actor="test", clock=lambda: t1).to_public()
    assert first["warned"] == ["ci"] and first["stopped"] == []
    assert vm.status == "running"  # warned, not yet stopped
    [doc] = json.loads(env.run("budget", "show", "--json").stdout)["projects"]
    assert doc["spent"] == pytest.approx(2.0) and doc["over_budget_since"] is not None
    # No new machine, before any Proxmox call.
    before = len(cluster.requests)
    refused = env.run("machine", "create", "--project", "ci", "--name", "m2")
    assert refused.returncode == 1 and "budget 1.5 spent (2.00)" in one_line_error(refused.stderr)
    assert cluster.requests[before:] == []
    # After the grace period its running machine is stopped, and the stop audited with the reason.
    t2 = t1 + timedelta(seconds=601)
    second = sync_machines(env.services(), actor="test", clock=lambda: t2).to_public()
    assert second["stopped"] == ["m1"] and vm.status == "stopped"
    with services.ready_db().session() as s:
        on_project, _ = audit.page(s, target="ci", limit=50)
        on_machine, _ = audit.page(s, target=m.uuid, limit=50)
    assert any(e["action"] == "budget.exceeded" and e["outcome"] == "warned" for e in on_project)
    stops = [e for e in on_machine if e["action"] == "machine.stop" and e["outcome"] == "completed"]
    assert stops and "budget" in stops[0]["details"]["why"]
