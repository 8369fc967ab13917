"""kill -9 of a real hubctl process at each step of the protocol, then reconcile: no row left
'creating', no orphan snapshot, nothing lost, and a second reconcile changes nothing."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest

from runtime.checkpoints import naming
from tests.support.hubenv import HubEnv, hub_snapshots


def kill_at(env: HubEnv, failpoint: str, *args: str, **extra: str) -> None:
    """Run hubctl until it reaches the failpoint, then SIGKILL it there."""
    proc = env.spawn(*args, HUB_FAILPOINT=failpoint, **extra)
    assert proc.stderr is not None
    deadline = time.monotonic() + 60
    line = ""
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if f"failpoint {failpoint} reached" in line or not line:
            break
    try:
        assert f"failpoint {failpoint} reached" in line, f"hubctl never reached {failpoint}: {line!r}"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def rows(env: HubEnv) -> list[dict[str, Any]]:
    return json.loads(env.run("checkpoint", "list", "--json").stdout)["checkpoints"]


def reconcile(env: HubEnv) -> dict[str, Any]:
    result = env.run("reconcile", "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_agreement(env: HubEnv, pve: Any) -> None:
    """The database and Proxmox agree: every live row has a complete snapshot and vice versa."""
    live = {r["snapname"]: r for r in rows(env) if r["status"] == "completed"}
    assert not [r for r in rows(env) if r["status"] == "creating"]
    snaps = hub_snapshots(pve)
    assert set(live) == set(snaps)
    assert all("snapstate" not in s for s in snaps.values())
    assert reconcile(env)["changes"] == []  # idempotent


@pytest.mark.parametrize(
    ("failpoint", "expected"),
    [
        ("checkpoint.marked", "failed"),  # row written, nothing asked of Proxmox yet
        ("checkpoint.snapshot_started", "completed"),  # task running/finished, process gone
        ("checkpoint.snapshot_done", "completed"),  # task done, not verified or marked
        ("checkpoint.completed", "completed"),  # marked, retention not run
    ],
)
def test_kill_at_each_step_then_reconcile(hubenv: HubEnv, pve: Any, failpoint: str, expected: str) -> None:
    kill_at(hubenv, failpoint, "checkpoint", "create")
    before = rows(hubenv)
    assert len(before) == 1
    if failpoint != "checkpoint.completed":
        assert before[0]["status"] == "creating"
    report = reconcile(hubenv)
    after = rows(hubenv)
    assert [r["status"] for r in after] == [expected]
    if expected == "failed":
        assert after[0]["error"].startswith("interrupted")
    if failpoint != "checkpoint.completed":
        assert [c["uuid"] for c in report["changes"]] == [before[0]["uuid"]]
    assert_agreement(hubenv, pve)
    # The Hub works normally afterwards.
    assert hubenv.run("checkpoint", "create").returncode == 0
    assert_agreement(hubenv, pve)


@pytest.mark.fakepve(time_scale=1.0)
def test_kill_while_the_snapshot_task_is_still_running(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """Killed mid-task with no failpoint: reconcile waits for the running task, then settles it."""
    pve.vm(100).config["scsi0"] = "ceph-pool:vm-100-disk-0,size=50G"
    pve.add_ceph_storage()
    pve.ceph_slow(8)  # the snapshot task takes ~8 s: reconcile (a new process) must see it running
    proc = sqlite_hubenv.spawn("checkpoint", "create")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(
        t["type"] == "qmsnapshot" and t["status"] == "running" for t in pve.tasks.values()
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    report = reconcile(sqlite_hubenv)
    assert len(report["in_progress"]) == 1  # not touched while Proxmox still works on it
    assert rows(sqlite_hubenv)[0]["status"] == "creating"
    while any(t["status"] == "running" for t in pve.tasks.values()):
        time.sleep(0.1)
    reconcile(sqlite_hubenv)
    assert [r["status"] for r in rows(sqlite_hubenv)] == ["completed"]
    assert_agreement(sqlite_hubenv, pve)


def test_kill_during_retention_then_reconcile(sqlite_hubenv: HubEnv, pve: Any) -> None:
    env = sqlite_hubenv
    policy = {"HUB_KEEP_LAST": "1", "HUB_KEEP_DAILY": "0", "HUB_KEEP_WEEKLY": "0", "HUB_KEEP_MONTHLY": "0"}
    scheduled = ("checkpoint", "create", "--kind", "scheduled")  # the label HUB_KEEP_* applies to
    for _ in range(2):
        assert env.run(*scheduled, HUB_KEEP_LAST="10").returncode == 0
    kill_at(env, "retention.deleting", *scheduled, **policy)
    assert len(hub_snapshots(pve)) == 3
    reconcile(env)
    assert_agreement(env, pve)
    # Retention then finishes what the killed run started.
    assert env.run("checkpoint", "prune", **policy).returncode == 0
    assert len(hub_snapshots(pve)) == 1
    assert_agreement(env, pve)


def test_nothing_is_deleted_without_an_audit_row(sqlite_hubenv: HubEnv, pve: Any) -> None:
    from sqlalchemy import select

    from runtime.db import AuditEntry

    env = sqlite_hubenv
    kill_at(env, "checkpoint.marked", "checkpoint", "create")
    uuid = rows(env)[0]["uuid"]
    # A partial snapshot appears for it (as a half-done task would leave).
    pve.vm(100).snapshots[naming.snapname_for(uuid)] = {
        "snapstate": "prepare",
        "snaptime": 1,
        "description": naming.describe(uuid=uuid, kind="manual", created_at=_now(), reason=None),
    }
    reconcile(env)
    assert hub_snapshots(pve) == {}
    with env.services().db.session() as s:
        trail = [(e.action, e.details.get("why", "")) for e in s.scalars(select(AuditEntry))]
    assert any(action == "reconcile.status" and "incomplete" in why for action, why in trail)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_spawned_process_really_dies(sqlite_hubenv: HubEnv) -> None:
    """Guard for the harness itself: the failpoint freezes the process, it does not exit."""
    proc = sqlite_hubenv.spawn("checkpoint", "create", HUB_FAILPOINT="checkpoint.marked")
    assert proc.stderr is not None
    assert "failpoint checkpoint.marked reached" in proc.stderr.readline()
    time.sleep(0.5)
    assert proc.poll() is None
    proc.kill()
    proc.wait(timeout=10)
