"""Two changes to one checkpoint at once: what one of them read before it held the VM's lock is stale
by the time it has the lock, so it must read again under it.

Found by the API's schemathesis test (tests/runtime/api/test_api.py), whose stateful phase sends
``DELETE /checkpoints/{uuid}`` (a job) and at once ``POST /checkpoints/{uuid}/protect``: when the job
held the lock between protect's read and protect's lock, protect rewrote the description of a
snapshot the job had just removed, and the API answered 502 (Proxmox: the snapshot does not exist).
On a loaded machine the job is slower, so the window is wider: the test failed now and then.

Each test freezes a real ``hubctl`` at the failpoint between its unlocked read and its lock
(``checkpoint.<op>.unlocked``), makes the other change in-process, and lets it go on."""

from __future__ import annotations

import json
import signal
import subprocess
from datetime import UTC, datetime
from typing import Any

from runtime.checkpoints import naming
from runtime.checkpoints.records import CheckpointStatus
from tests.runtime.machines.helpers import wait_paused
from tests.support.hubenv import HubEnv, hub_snapshots, one_line_error


def frozen(env: HubEnv, *args: str, point: str) -> subprocess.Popen[str]:
    """``hubctl <args>`` stopped at the failpoint ``point`` (resume it with SIGCONT)."""
    proc = env.spawn(*args, HUB_FAILPOINT=f"{point}=pause")
    wait_paused(proc, point)  # stopped for real: a SIGCONT before its SIGSTOP would be lost
    return proc


def resumed(proc: subprocess.Popen[str]) -> tuple[int, str, str]:
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    return proc.returncode, out, err


def test_protect_of_a_checkpoint_deleted_meanwhile_is_refused_not_a_proxmox_error(
    sqlite_hubenv: HubEnv, pve: Any
) -> None:
    cp = sqlite_hubenv.checkpoints().create()
    proc = frozen(sqlite_hubenv, "checkpoint", "protect", cp.uuid, point="checkpoint.protect.unlocked")
    sqlite_hubenv.checkpoints().delete(cp.uuid)  # the delete job that held the lock first

    code, _, err = resumed(proc)
    # Before the fix: exit 1, "Proxmox API answered 500: snapshot ... does not exist" (HTTP: 502).
    assert code == 2, err
    assert "is deleted" in one_line_error(err)
    assert cp.snapname not in hub_snapshots(pve)
    row = sqlite_hubenv.queries().show(cp.uuid)
    assert row.status is CheckpointStatus.DELETED and not row.protected


def test_delete_of_a_checkpoint_protected_meanwhile_is_refused_and_the_snapshot_stays(
    sqlite_hubenv: HubEnv, pve: Any
) -> None:
    cp = sqlite_hubenv.checkpoints().create()
    proc = frozen(sqlite_hubenv, "checkpoint", "delete", cp.uuid, point="checkpoint.delete.unlocked")
    sqlite_hubenv.checkpoints().protect(cp.uuid)

    code, _, err = resumed(proc)
    # Before the fix: exit 0, and the protected checkpoint's snapshot was gone.
    assert code == 2, err
    assert "is protected" in one_line_error(err)
    assert cp.snapname in hub_snapshots(pve)
    row = sqlite_hubenv.queries().show(cp.uuid)
    assert row.status is CheckpointStatus.COMPLETED and row.protected


def test_protect_keeps_a_blessing_given_meanwhile_on_the_snapshot(sqlite_hubenv: HubEnv, pve: Any) -> None:
    cp = sqlite_hubenv.checkpoints().create()
    at = datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC)
    proc = frozen(
        sqlite_hubenv, "checkpoint", "protect", cp.uuid, "--json", point="checkpoint.protect.unlocked"
    )
    sqlite_hubenv.checkpoints().bless(cp.uuid, at=at, why="the health loop, meanwhile")

    code, out, err = resumed(proc)
    assert code == 0, err
    assert json.loads(out)["protected"] is True
    # Before the fix: the description was rewritten from the record read before the blessing, so
    # the snapshot lost it (a Hub rolled back to before this moment would not know it was blessed).
    claim = naming.owned(cp.snapname, str(hub_snapshots(pve)[cp.snapname]["description"]))
    assert claim is not None and claim.protected and claim.blessed_at == at
    assert sqlite_hubenv.queries().show(cp.uuid).blessed_at == at
