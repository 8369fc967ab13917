"""Each check's thresholds: the pure threshold functions at and around each boundary, and the checks
that read Proxmox against fakepve (quorum lost, a paused VM, the VM's memory as Proxmox reports it)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from hubcore.proxmox.vms import VmStatus
from runtime.db import Job
from runtime.health import evaluate
from runtime.health.checks import (
    disk_check,
    failure_rate_check,
    hub_vm_check,
    memory_check,
    proxmox_check,
    vm_usage_check,
)
from runtime.settings import Settings
from tests.support.hubenv import HubEnv

GIB = 1024**3


def settings(**values: Any) -> Settings:
    return Settings(**values)


def checks_of(doc: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {c["name"]: c for c in doc["checks"]}


@pytest.mark.parametrize(
    ("used_percent", "expected"),
    [
        (0, "healthy"),
        (84, "healthy"),
        (85, "degraded"),
        (94, "degraded"),
        (95, "critical"),
        (100, "critical"),
    ],
)
def test_disk_thresholds(used_percent: int, expected: str) -> None:
    total = 100 * GIB
    free = total - used_percent * GIB
    check = disk_check(Path("/data"), settings(), usage=(total, total - free, free))
    assert check.status == expected
    assert check.detail.startswith(f"/data: {used_percent}% used")


def test_disk_thresholds_follow_the_settings() -> None:
    s = settings(health_disk_degraded_percent=50, health_disk_critical_percent=60)
    total = 100 * GIB
    assert disk_check(Path("/"), s, usage=(total, 49 * GIB, 51 * GIB)).status == "healthy"
    assert disk_check(Path("/"), s, usage=(total, 55 * GIB, 45 * GIB)).status == "degraded"
    assert disk_check(Path("/"), s, usage=(total, 60 * GIB, 40 * GIB)).status == "critical"


def test_disk_of_a_real_path_is_measured(tmp_path: Path) -> None:
    check = disk_check(tmp_path, settings())
    assert str(tmp_path) in check.detail and "% used" in check.detail


def meminfo(total_kb: int, available_kb: int) -> str:
    return f"MemTotal:       {total_kb} kB\nMemFree:        1000 kB\nMemAvailable:   {available_kb} kB\n"


@pytest.mark.parametrize(
    ("available_kb", "expected"),
    [(1000, "healthy"), (101, "healthy"), (100, "degraded"), (21, "degraded"), (20, "critical")],
)
def test_memory_thresholds(available_kb: int, expected: str) -> None:
    # 1000 kB total: 90% used is degraded, 98% critical (the defaults).
    assert memory_check(meminfo(1000, available_kb), settings()).status == expected


def test_memory_without_the_fields_is_degraded_not_a_crash() -> None:
    check = memory_check("nonsense\n", settings())
    assert check.status == "degraded" and "MemAvailable" in check.detail


def test_this_machines_memory_is_read() -> None:
    check = memory_check(Path("/proc/meminfo").read_text(), settings())
    assert "available of" in check.detail


@pytest.mark.parametrize(
    ("failed", "succeeded", "expected"),
    [
        (4, 0, "healthy"),  # fewer than health_failure_min_jobs (5): no signal
        (2, 3, "healthy"),  # 40%
        (3, 3, "degraded"),  # 50%
        (4, 1, "degraded"),  # 80%
        (5, 0, "critical"),  # 100%
    ],
)
def test_failure_rate_thresholds(failed: int, succeeded: int, expected: str) -> None:
    check = failure_rate_check(failed=failed, succeeded=succeeded, settings=settings())
    assert check.status == expected
    assert f"{failed} of {failed + succeeded}" in check.detail


def test_failure_rate_thresholds_follow_the_settings() -> None:
    s = settings(
        health_failure_min_jobs=1, health_failure_degraded_percent=10, health_failure_critical_percent=20
    )
    assert failure_rate_check(failed=1, succeeded=9, settings=s).status == "degraded"
    assert failure_rate_check(failed=2, succeeded=8, settings=s).status == "critical"
    assert failure_rate_check(failed=0, succeeded=1, settings=s).status == "healthy"


def test_degraded_above_critical_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="health_disk_degraded_percent"):
        settings(health_disk_degraded_percent=96)


def test_a_history_shorter_than_the_blessing_window_is_refused() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="health_history_days"):
        settings(health_history_days=1, bless_window_seconds=86400)


def test_quorum() -> None:
    assert proxmox_check("API reachable", True).status == "healthy"
    assert proxmox_check("API reachable", None).status == "healthy"  # standalone node
    lost = proxmox_check("API reachable", False)
    assert lost.status == "critical" and "NO quorum" in lost.detail


def status(**values: Any) -> VmStatus:
    base: dict[str, Any] = {
        "vmid": 100,
        "node": "pve1",
        "status": "running",
        "qmpstatus": "running",
        "lock": None,
        "uptime": 10,
        "cpu": 0.1,
        "mem": 0,
        "maxmem": 0,
        "disk": 0,
        "maxdisk": 0,
        "name": "hub",
    }
    base.update(values)
    return VmStatus(**base)


def test_hub_vm_status() -> None:
    assert hub_vm_check(status()).status == "healthy"
    assert hub_vm_check(status(status="stopped", qmpstatus="stopped")).status == "critical"
    paused = hub_vm_check(status(qmpstatus="paused"))
    assert paused.status == "critical" and "paused" in paused.detail
    assert hub_vm_check(status(lock="backup")).status == "degraded"


def test_the_vms_use_as_proxmox_reports_it() -> None:
    s = settings()
    assert vm_usage_check(status(mem=50, maxmem=100), s).status == "healthy"
    high = vm_usage_check(status(mem=96, maxmem=100), s)
    assert high.status == "degraded" and "memory 96%" in high.detail
    # Memory as Proxmox counts it includes the page cache: never critical on its own.
    assert vm_usage_check(status(mem=100, maxmem=100), s).status == "degraded"
    assert vm_usage_check(status(disk=96, maxdisk=100, maxmem=100, mem=1), s).status == "critical"
    assert "not reported" in vm_usage_check(status(maxdisk=100), s).detail


def test_lost_quorum_is_critical_through_the_api(sqlite_hubenv: HubEnv, pve: Any) -> None:
    services = sqlite_hubenv.services()
    assert checks_of(evaluate(services))["proxmox"]["status"] == "healthy"
    pve.lose_quorum()
    doc = evaluate(services)
    assert doc["status"] == "critical"
    assert "NO quorum" in checks_of(doc)["proxmox"]["detail"]
    pve.regain_quorum()
    assert checks_of(evaluate(services))["proxmox"]["status"] == "healthy"


def test_the_vms_memory_from_proxmox(sqlite_hubenv: HubEnv, pve: Any) -> None:
    pve.vm(100).stats.update({"mem": 97 * GIB, "maxmem": 100 * GIB})
    doc = evaluate(sqlite_hubenv.services())
    usage = checks_of(doc)["hub_vm_usage"]
    assert usage["status"] == "degraded" and "memory 97%" in usage["detail"], usage


def test_recent_job_failures_from_the_database(sqlite_hubenv: HubEnv) -> None:
    services = sqlite_hubenv.services()
    now = datetime.now(UTC)
    with services.db.session() as s:
        for i in range(6):
            s.add(
                Job(
                    id=f"job-{i}",
                    kind="checkpoint.create",
                    params={},
                    state="failed",
                    actor="test",
                    progress=[],
                    created_at=now - timedelta(minutes=5),
                    finished_at=now - timedelta(minutes=1),
                )
            )
        # Outside the window: does not count.
        s.add(
            Job(
                id="old",
                kind="checkpoint.create",
                params={},
                state="succeeded",
                actor="test",
                progress=[],
                created_at=now - timedelta(hours=3),
                finished_at=now - timedelta(hours=2),
            )
        )
    jobs = checks_of(evaluate(services, now=now))["jobs"]
    assert jobs["status"] == "critical" and jobs["detail"].startswith("6 of 6"), jobs
