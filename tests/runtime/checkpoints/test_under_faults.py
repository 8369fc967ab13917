"""Checkpoints and reconcile on an operator's worst day, through the real `hubctl` against fakepve:
a task still running when its UPID was never stored, a task slower than our bound, a lost answer to
the snapshot request, one row that cannot be settled among others, and Proxmox unreachable."""

from __future__ import annotations

import json
import signal
import time
from typing import Any

import pytest
from sqlalchemy import select

from runtime.checkpoints import naming
from runtime.db import AuditEntry
from tests.runtime.checkpoints.test_crash_safety import kill_at, reconcile, rows
from tests.support.hubenv import (
    HUB_VMID,
    HubEnv,
    fake_pve_client,
    hub_snapshots,
    one_line_error,
)

SNAP_PATH = f"/nodes/pve1/qemu/{HUB_VMID}/snapshot"


def slow_snapshots(pve: Any, secs: float) -> None:
    """Snapshots of the Hub VM take `secs` (its disk on a slow Ceph pool)."""
    pve.vm(HUB_VMID).config["scsi0"] = "ceph-pool:vm-100-disk-0,size=50G"
    pve.add_ceph_storage()
    pve.ceph_slow(secs)


def wait_tasks_done(pve: Any, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while any(t["status"] == "running" for t in pve.tasks.values()):
        assert time.monotonic() < deadline, "the fake cluster's tasks did not end"
        time.sleep(0.1)


@pytest.mark.fakepve(time_scale=1.0)
def test_killed_before_the_upid_was_stored_while_the_task_runs(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """The process died between the snapshot request and storing its UPID: reconcile must find the
    running task by itself and leave the row alone (not hit the VM's lock trying to remove it)."""
    slow_snapshots(pve, 6)
    kill_at(sqlite_hubenv, "checkpoint.snapshot_posted", "checkpoint", "create")
    [row] = rows(sqlite_hubenv)
    assert row["status"] == "creating" and row["upid"] is None
    report = reconcile(sqlite_hubenv)  # exit 0: nothing failed, one row is simply not done yet
    assert report["in_progress"] == [row["uuid"]] and report["changes"] == []
    assert rows(sqlite_hubenv)[0]["status"] == "creating"
    wait_tasks_done(pve)
    assert [c["action"] for c in reconcile(sqlite_hubenv)["changes"]] == ["completed"]
    assert row["snapname"] in hub_snapshots(pve)


@pytest.mark.fakepve(time_scale=1.0)
def test_a_task_slower_than_the_bound_is_not_a_failed_checkpoint(sqlite_hubenv: HubEnv, pve: Any) -> None:
    slow_snapshots(pve, 5)
    result = sqlite_hubenv.run("checkpoint", "create", "--json", HUB_TASK_TIMEOUT_SECONDS="1.5")
    assert result.returncode == 1
    assert "still running" in one_line_error(result.stderr)
    [row] = rows(sqlite_hubenv)
    assert row["status"] == "creating" and row["upid"]  # left for reconcile, not marked failed
    wait_tasks_done(pve)
    report = reconcile(sqlite_hubenv)
    assert [c["action"] for c in report["changes"]] == ["completed"]
    assert rows(sqlite_hubenv)[0]["status"] == "completed"
    assert row["snapname"] in hub_snapshots(pve)  # the good snapshot is kept


def test_a_failed_row_whose_snapshot_completed_is_completed(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """A row marked failed (an older runtime did that on a timeout) whose snapshot finished: Proxmox
    is the truth, so reconcile completes it instead of deleting a good snapshot as a leftover."""
    cp = json.loads(sqlite_hubenv.run("checkpoint", "create", "--json").stdout)
    with sqlite_hubenv.services().db.session() as s:
        from runtime.db import Checkpoint

        s.get_one(Checkpoint, cp["uuid"]).status = "failed"
    report = reconcile(sqlite_hubenv)
    assert [c["action"] for c in report["changes"]] == ["completed"]
    assert cp["snapname"] in hub_snapshots(pve)


@pytest.mark.fakepve(time_scale=1.0)
def test_a_lost_answer_waits_for_the_task_it_started(
    sqlite_hubenv: HubEnv, pve: Any, fakepve_cafile: str
) -> None:
    """The snapshot request got through but its answer was lost: the retry finds the snapshot still in
    'prepare', finds its running task, waits for it, then verifies. Nothing is deleted."""
    slow_snapshots(pve, 4)
    proc = sqlite_hubenv.spawn("checkpoint", "create", "--json", HUB_FAILPOINT="checkpoint.marked=pause")
    assert proc.stderr is not None
    assert "failpoint checkpoint.marked reached" in proc.stderr.readline()
    [row] = rows(sqlite_hubenv)
    # What the lost request did on Proxmox: the snapshot task started...
    fake_pve_client(pve, fakepve_cafile).create_snapshot(
        "pve1",
        HUB_VMID,
        name=row["snapname"],
        description=naming.describe(
            uuid=row["uuid"], kind="manual", created_at=_parse(row["created_at"]), reason=None
        ),
    )
    # ...and the process's own request gets no usable answer (a proxy error), so it retries.
    pve.fail("POST", SNAP_PATH, 502, "Bad Gateway (proxy lost the upstream answer)", times=1)
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    cp = json.loads(out)
    assert cp["status"] == "completed" and cp["upid"]
    snaps = hub_snapshots(pve)
    assert list(snaps) == [row["snapname"]] and "snapstate" not in snaps[row["snapname"]]
    assert not [p for m, p, _ in pve.requests if m == "DELETE"]


def test_one_row_that_cannot_be_settled_does_not_stop_the_rest(sqlite_hubenv: HubEnv, pve: Any) -> None:
    env = sqlite_hubenv
    kill_at(env, "checkpoint.snapshot_done", "checkpoint", "create")  # complete snapshot, row 'creating'
    kill_at(env, "checkpoint.snapshot_done", "checkpoint", "create")
    stuck, fine = rows(env)
    # The stuck row's snapshot is left half-made, and Proxmox refuses to delete it right now.
    pve.vm(HUB_VMID).snapshots[stuck["snapname"]]["snapstate"] = "prepare"
    pve.fail("DELETE", f"{SNAP_PATH}/{stuck['snapname']}", 500, "got timeout waiting on storage")
    result = env.run("reconcile", "--json", HUB_TRANSIENT_RETRY_SECONDS="1")
    assert result.returncode == 0, result.stderr  # what could be settled was
    report = json.loads(result.stdout)
    assert [c["uuid"] for c in report["changes"]] == [fine["uuid"]]
    assert [u["uuid"] for u in report["unsettled"]] == [stuck["uuid"]]
    assert "got timeout" in report["unsettled"][0]["why"]
    statuses = {r["uuid"]: r["status"] for r in rows(env)}
    assert statuses == {fine["uuid"]: "completed", stuck["uuid"]: "creating"}
    text = env.run("reconcile", HUB_TRANSIENT_RETRY_SECONDS="1")
    assert text.returncode == 0 and f"left for the next run: {stuck['uuid']}" in text.stdout
    with env.services().db.session() as s:
        runs = [e.outcome for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile"))]
    assert runs[-1] == "partial"
    pve.failures.clear()
    assert [c["uuid"] for c in reconcile(env)["changes"]] == [stuck["uuid"]]  # settled next time


def test_reconcile_with_proxmox_unreachable_fails_and_is_audited(sqlite_hubenv: HubEnv) -> None:
    result = sqlite_hubenv.run(
        "reconcile", HUB_PROXMOX_URL="https://127.0.0.1:9", HUB_TRANSIENT_RETRY_SECONDS="1"
    )
    assert result.returncode == 1
    assert "nothing could be settled" in one_line_error(result.stderr)
    with sqlite_hubenv.services().db.session() as s:
        runs = [e.outcome for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile"))]
    assert runs == ["failed"]


def _parse(value: str) -> Any:
    from datetime import datetime

    return datetime.fromisoformat(value)
