"""A create killed with SIGKILL at each step, then repeated: one VM, never two; and a VM id taken by
someone else between /cluster/nextid and the clone is answered by asking for another id."""

from __future__ import annotations

import json
import signal
from typing import Any

import pytest

from runtime.machines.projects import ProjectStore
from tests.runtime.machines.helpers import machine_vms, untouched_foreign, wait_paused
from tests.support.hubenv import HubEnv, one_line_error


@pytest.mark.parametrize("step", ["machine.allocated", "machine.cloned", "machine.configured"])
def test_kill_mid_create_then_retry_makes_no_second_vm(menv: HubEnv, cluster: Any, step: str) -> None:
    ProjectStore(menv.services().ready_db()).create("ci", machines=1)
    proc = menv.spawn("machine", "create", "--project", "ci", "--name", "build-1", HUB_FAILPOINT=step)
    assert proc.stderr is not None
    assert f"failpoint {step} reached" in proc.stderr.readline()
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=30)
    made = len(machine_vms(cluster, "build-1"))
    assert made == (0 if step == "machine.allocated" else 1)
    # The same create again: it resumes the machine (the quota of 1 is the machine's own slot).
    result = menv.run("machine", "create", "--project", "ci", "--name", "build-1", "--json")
    assert result.returncode == 0, result.stderr
    machine = json.loads(result.stdout)
    [vm] = machine_vms(cluster, "build-1")
    assert machine["vm_id"] == vm.vmid and machine["status"] == "running" and vm.status == "running"
    assert vm.config["tags"] == "hub-machine;hub-project-ci"
    clones = [p for m, p, _ in cluster.requests if m == "POST" and p.endswith("/clone")]
    assert len(clones) == 1, clones
    untouched_foreign(cluster)


def test_a_vm_id_taken_between_nextid_and_the_clone_is_asked_for_again(
    sqlite_menv: HubEnv, cluster: Any
) -> None:
    ProjectStore(sqlite_menv.services().ready_db()).create("ci")
    proc = sqlite_menv.spawn(
        "machine",
        "create",
        "--project",
        "ci",
        "--name",
        "m1",
        "--json",
        HUB_FAILPOINT="machine.allocated=pause",
    )
    wait_paused(proc, "machine.allocated")
    with sqlite_menv.services().ready_db().session() as s:
        from runtime.db.models import Machine

        [row] = s.query(Machine).all()
        taken = row.vm_id
    # Another client takes the id /cluster/nextid gave us (PVE reserves nothing).
    intruder = cluster.add_vm(taken, "intruder", node="pve1", status="running", config={"cores": 1})
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    machine = json.loads(out)
    assert machine["vm_id"] != taken
    assert cluster.vm(taken) is intruder and intruder.name == "intruder" and intruder.status == "running"
    assert "hub-machine-uuid" not in str(intruder.config.get("description", ""))
    assert [vm.name for vm in machine_vms(cluster)] == ["m1"]


def test_a_clone_refused_with_already_exists_is_tried_again(sqlite_menv: HubEnv, cluster: Any) -> None:
    """The race the existence check cannot see: the id is taken between our check and our clone.
    PVE's answer (qemu-server clone_vm: "unable to create VM N: config file already exists") is a
    conflict; the create looks again and goes on, still with one VM in the end."""
    from tests.runtime.machines.conftest import TEMPLATE

    ProjectStore(sqlite_menv.services().ready_db()).create("ci")
    cluster.fail(
        "POST",
        f"/nodes/pve2/qemu/{TEMPLATE}/clone",
        500,
        "unable to create VM 101: config file already exists",
        times=1,
    )
    result = sqlite_menv.run("machine", "create", "--project", "ci", "--name", "m1", "--json")
    assert result.returncode == 0, result.stderr
    clones = [p for m, p, _ in cluster.requests if m == "POST" and p.endswith("/clone")]
    assert len(clones) == 2
    assert [vm.name for vm in machine_vms(cluster)] == ["m1"]


def test_a_failed_create_is_retried_by_the_same_create(sqlite_menv: HubEnv, cluster: Any) -> None:
    ProjectStore(sqlite_menv.services().ready_db()).create("ci", machines=1)
    cluster.fail("POST", "/status/start", 403, "Permission check failed (/vms/101, VM.PowerMgmt)")
    first = sqlite_menv.run("machine", "create", "--project", "ci", "--name", "m1")
    assert first.returncode == 1 and "failed at step configured" in one_line_error(first.stderr)
    cluster.failures.clear()  # the operator fixed the permission
    second = sqlite_menv.run("machine", "create", "--project", "ci", "--name", "m1", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["status"] == "running"
    assert len(machine_vms(cluster, "m1")) == 1
