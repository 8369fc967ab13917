"""Each failure Proxmox can throw at a checkpoint: the row ends failed with the error, nothing partial
is left behind, the operator gets one line and exit 1, and permanent faults are not retried."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from hubcore.proxmox import ProxmoxClient, ProxmoxLockedError, ProxmoxTLSError
from runtime.checkpoints import naming
from runtime.checkpoints.errors import CheckpointError
from runtime.db import AuditEntry
from tests.support.hubenv import (
    HUB_VMID,
    TOKEN_ID,
    HubEnv,
    fake_pve_client,
    hub_snapshots,
    one_line_error,
)

SNAP_POST = f"/api2/json/nodes/pve1/qemu/{HUB_VMID}/snapshot"


def posts(pve: Any) -> int:
    return sum(1 for m, p, _ in pve.requests if m == "POST" and p == SNAP_POST)


def failed_row(env: HubEnv) -> dict[str, Any]:
    rows = json.loads(env.run("checkpoint", "list", "--json").stdout)["checkpoints"]
    assert len(rows) == 1
    assert rows[0]["status"] == "failed"
    return rows[0]


def test_task_error_fails_the_checkpoint_without_retry(hubenv: HubEnv, pve: Any) -> None:
    pve.fail("POST", SNAP_POST.removeprefix("/api2/json"), error="snapshot_feature_not_available")
    result = hubenv.run("checkpoint", "create", "--json")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "snapshot feature is not available" in line
    doc = json.loads(result.stdout)
    assert doc["checkpoint"]["status"] == "failed"
    row = failed_row(hubenv)
    assert "snapshot feature is not available" in row["error"]
    assert hub_snapshots(pve) == {}
    assert posts(pve) == 1
    with hubenv.services().db.session() as s:
        outcomes = [e.outcome for e in s.scalars(select(AuditEntry).where(AuditEntry.target == row["uuid"]))]
    assert outcomes == ["started", "failed"]


def test_partial_snapshot_is_removed_when_the_task_fails(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """A snapshot task that dies half-way leaves a snapshot in 'prepare' state: it must not survive."""
    pve.fail("POST", SNAP_POST.removeprefix("/api2/json"), error="wrong_snapshot_state")
    vm = pve.vm(HUB_VMID)

    def leave_partial(message: str) -> None:
        if message.startswith("marked checkpoint "):
            uuid = message.split()[2]
            name = naming.snapname_for(uuid)
            vm.snapshots[name] = {
                "snapstate": "prepare",
                "snaptime": int(time.time()),
                "description": naming.describe(uuid=uuid, kind="manual", created_at=_now(), reason=None),
            }

    svc = sqlite_hubenv.checkpoints(progress=leave_partial)
    with pytest.raises(CheckpointError) as info:
        svc.create()
    assert info.value.checkpoint.status == "failed"
    assert "wrong snapshot state" in (info.value.checkpoint.error or "")
    assert hub_snapshots(pve) == {}
    deletes = [p for m, p, _ in pve.requests if m == "DELETE"]
    assert len(deletes) == 1 and deletes[0].endswith(info.value.checkpoint.snapname)


def test_vm_locked_by_a_backup_is_waited_out(sqlite_hubenv: HubEnv, pve: Any) -> None:
    pve.snapshot_lock(HUB_VMID, "backup")  # a vzdump holds the VM's config lock

    def backup_ends_after_the_first_refusal() -> None:
        # Unlock only once a snapshot task has failed on the lock: no race with process start-up.
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if any("locked" in str(t.get("exitstatus", "")) for t in list(pve.tasks.values())):
                time.sleep(0.3)
                pve.unlock(HUB_VMID)
                return
            time.sleep(0.05)

    threading.Thread(target=backup_ends_after_the_first_refusal, daemon=True).start()
    result = sqlite_hubenv.run("checkpoint", "create", "--json", HUB_LOCKED_RETRY_SECONDS="20")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "completed"
    assert posts(pve) >= 2  # the locked attempt was retried
    assert len(hub_snapshots(pve)) == 1


def test_vm_locked_for_too_long_fails_clearly(sqlite_hubenv: HubEnv, pve: Any) -> None:
    pve.snapshot_lock(HUB_VMID, "backup")
    started = time.monotonic()
    result = sqlite_hubenv.run("checkpoint", "create", HUB_LOCKED_RETRY_SECONDS="2")
    elapsed = time.monotonic() - started
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "locked" in line and "backup" in line
    assert elapsed < 30  # bounded by the lock budget, not hung
    assert failed_row(sqlite_hubenv)["error"]
    assert hub_snapshots(pve) == {}


def test_flaky_network_is_retried_to_success(hubenv: HubEnv, pve: Any) -> None:
    pve.flaky_network(drop_rate=0.3, seed=7)
    result = hubenv.run("checkpoint", "create", "--json", HUB_TRANSIENT_RETRY_SECONDS="30")
    pve.flaky_network(drop_rate=0.0)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "completed"
    assert len(hub_snapshots(pve)) == 1  # a lost answer never became a second snapshot


def test_permission_denied_fails_fast(hubenv: HubEnv, pve: Any) -> None:
    pve.grant(TOKEN_ID, f"/vms/{HUB_VMID}", "VM.Audit")  # can read, cannot snapshot
    result = hubenv.run("checkpoint", "create")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "403" in line and "VM.Snapshot" in line
    assert posts(pve) == 1  # a permanent error is not retried
    assert failed_row(hubenv)["status"] == "failed"


def test_lost_quorum_fails_fast(sqlite_hubenv: HubEnv, pve: Any) -> None:
    pve.lose_quorum()
    result = sqlite_hubenv.run("checkpoint", "create")
    assert result.returncode == 1
    assert "lost quorum" in one_line_error(result.stderr)
    assert posts(pve) == 1
    pve.regain_quorum()
    assert sqlite_hubenv.run("checkpoint", "create").returncode == 0


def test_unreachable_api_fails_after_a_bounded_retry(sqlite_hubenv: HubEnv, pve: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    started = time.monotonic()
    result = sqlite_hubenv.run(
        "checkpoint", "create", HUB_PROXMOX_URL=f"https://127.0.0.1:{closed}", HUB_TRANSIENT_RETRY_SECONDS="2"
    )
    assert result.returncode == 1
    assert "unreachable" in one_line_error(result.stderr)
    assert time.monotonic() - started < 30
    # Finding the VM's node is the first call: with no answer nothing was attempted, so no row is
    # left behind (a failed row per unreachable attempt would only be noise).
    rows = json.loads(sqlite_hubenv.run("checkpoint", "list", "--json").stdout)["checkpoints"]
    assert rows == []


def test_certificate_from_another_ca_is_refused_without_retry(pve: Any, tmp_path: Path) -> None:
    from fakepve.certs import make_cert

    other_ca = make_cert(str(tmp_path), name="other")[0]
    client = fake_pve_client(pve, other_ca, transient_retry_seconds=10)
    started = time.monotonic()
    with pytest.raises(ProxmoxTLSError, match="TLS verification"):
        client.version()
    assert time.monotonic() - started < 5
    assert pve.requests == []  # the handshake failed before any request was made


@pytest.fixture
def client(pve: Any, fakepve_cafile: str) -> ProxmoxClient:
    """The real client against the fake, verifying its certificate."""
    return fake_pve_client(pve, fakepve_cafile)


def test_task_with_warnings_counts_as_success_and_errors_do_not(pve: Any, client: ProxmoxClient) -> None:
    upid = client.create_snapshot("pve1", HUB_VMID, name="hub-" + "a" * 32, description="x")
    assert upid is not None
    pve.tasks[upid]["exitstatus"] = "WARNINGS: 2"
    assert client.wait_task(upid, timeout=5).exitstatus == "WARNINGS: 2"
    pve.tasks[upid]["exitstatus"] = "VM is locked (backup)"
    with pytest.raises(ProxmoxLockedError):
        client.wait_task(upid, timeout=5)


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)


def test_removing_a_snapshot_that_is_already_gone_is_done(client: ProxmoxClient) -> None:
    name = "hub-" + "b" * 32
    assert client.get_snapshot("pve1", HUB_VMID, name) is None
    client.create_snapshot("pve1", HUB_VMID, name=name, description="x")
    assert client.get_snapshot("pve1", HUB_VMID, name) is not None
    assert client.remove_snapshot("pve1", HUB_VMID, name=name, force=False, timeout=5) is True
    assert client.remove_snapshot("pve1", HUB_VMID, name=name, force=False, timeout=5) is False
