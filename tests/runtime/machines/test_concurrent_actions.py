"""Two actions on one machine at once: the one that waited for the VM's lock reads the machine again
under it (as checkpoint changes do, tests/runtime/checkpoints/test_concurrent_changes.py)."""

from __future__ import annotations

import json
import signal
from typing import Any

from tests.runtime.machines.helpers import machine_vms, wait_paused
from tests.support.hubenv import HubEnv, one_line_error


def _ok(env: HubEnv, *args: str) -> dict[str, Any]:
    result = env.run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_stop_that_waited_for_a_destroy_leaves_the_machine_destroyed_not_missing(
    sqlite_menv: HubEnv, cluster: Any
) -> None:
    _ok(sqlite_menv, "project", "create", "ci")
    m = _ok(sqlite_menv, "machine", "create", "--project", "ci", "--name", "a1")
    proc = sqlite_menv.spawn("machine", "stop", m["uuid"], HUB_FAILPOINT="machine.stop.unlocked=pause")
    wait_paused(proc, "machine.stop.unlocked")  # read the machine 'running', not yet locked
    assert _ok(sqlite_menv, "machine", "destroy", m["uuid"])["status"] == "destroyed"

    proc.send_signal(signal.SIGCONT)
    _, err = proc.communicate(timeout=120)
    # Before: exit 1, "VM ... is no longer in the cluster (now 'missing')", and the row said so.
    assert proc.returncode == 2, err
    assert "is destroyed" in one_line_error(err)
    assert _ok(sqlite_menv, "machine", "show", m["uuid"])["status"] == "destroyed"
    assert machine_vms(cluster, "a1") == []
