"""The VM half of ProxmoxClient against fakepve over verified TLS: reads, clone, rollback, power
actions, destroy, task failures and a held lock. Assertions are on fakepve's state and request log."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from hubcore.proxmox import (
    ProxmoxBadRequest,
    ProxmoxClient,
    ProxmoxConflict,
    ProxmoxLockedError,
    ProxmoxNotFound,
    ProxmoxTaskFailed,
    VmRef,
    VmStatus,
)
from tests.support.hubenv import HUB_VMID, NODE, fake_pve_client

HUB = VmRef(vmid=HUB_VMID, node=NODE)
OTHER_NODE = "pve2"
POOL = "hub-dev"
SNAP = "hub-" + "c" * 32


def _client(pve: Any, cafile: str, *, sleep: Callable[[float], None] = time.sleep) -> ProxmoxClient:
    return fake_pve_client(pve, cafile, transient_retry_seconds=1.0, locked_retry_seconds=1.0, sleep=sleep)


@pytest.fixture
def client(pve: Any, fakepve_cafile: str) -> ProxmoxClient:
    return _client(pve, fakepve_cafile)


def _posts(pve: Any, suffix: str) -> int:
    return sum(1 for method, path, _ in pve.requests if method == "POST" and path.endswith(suffix))


# ------------------------------------------------------------------ reads


def test_cluster_vms_lists_qemu_vms_of_every_node_with_pool_tags_and_lock(
    pve: Any, client: ProxmoxClient
) -> None:
    pve.add_node(OTHER_NODE)
    pve.add_vm(
        200,
        "exp-1",
        node=OTHER_NODE,
        pool=POOL,
        lock="backup",
        config={"tags": "exp;hub", "memory": 2048, "cores": 2, "scsi0": "local-lvm:vm-200-disk-0,size=32G"},
    )
    pve.add_vm(201, "tmpl", node=OTHER_NODE, template=True)
    before = len(pve.requests)

    vms = {vm.vmid: vm for vm in client.cluster_vms()}

    assert len(pve.requests) == before + 1  # one request for the whole cluster
    assert pve.requests[-1][1] == "/api2/json/cluster/resources"
    assert set(vms) == {HUB_VMID, 200, 201}
    hub, exp = vms[HUB_VMID], vms[200]
    assert (hub.node, hub.status, hub.pool, hub.lock, hub.tags) == (NODE, "running", None, None, ())
    assert hub.maxcpu == 4 and hub.maxmem == 8192 * 1024**2 and hub.maxdisk == 50 * 1024**3
    assert (exp.node, exp.status, exp.pool, exp.lock) == (OTHER_NODE, "stopped", POOL, "backup")
    assert exp.tags == ("exp", "hub")
    assert exp.name == "exp-1" and exp.uptime == 0 and exp.mem == 0 and not exp.template
    assert vms[201].template is True
    assert exp.ref == VmRef(vmid=200, node=OTHER_NODE)


def test_vm_status_is_typed(pve: Any, client: ProxmoxClient) -> None:
    status = client.vm_status(HUB)
    assert isinstance(status, VmStatus)
    assert (status.vmid, status.node, status.name) == (HUB_VMID, NODE, "hub")
    assert (status.status, status.qmpstatus, status.lock) == ("running", "running", None)
    assert status.maxmem == 8192 * 1024**2 and status.mem > 0 and status.maxdisk == 50 * 1024**3
    pve.snapshot_lock(HUB_VMID, "backup")
    assert client.vm_status(HUB).lock == "backup"
    with pytest.raises(ProxmoxNotFound):
        client.vm_status(VmRef(vmid=HUB_VMID, node=OTHER_NODE))


def test_vm_config_and_update_vm_config_wait_for_the_task(pve: Any, client: ProxmoxClient) -> None:
    client.stop(HUB, timeout=10)
    client.update_vm_config(HUB, timeout=10, cores=2, description="hub", delete="agent")
    config = client.vm_config(HUB)
    assert str(config["cores"]) == "2" and config["description"] == "hub" and "agent" not in config
    assert pve.tasklog[-1]["type"] == "qmconfig" and pve.tasklog[-1]["exitstatus"] == "OK"
    # Idempotent: the same values again change nothing.
    client.update_vm_config(HUB, timeout=10, cores=2, description="hub")
    assert client.vm_config(HUB)["digest"] == config["digest"]


def test_node_tasks_filters_by_vm_and_by_running(pve: Any, client: ProxmoxClient) -> None:
    pve.add_vm(200, "other", node=NODE)
    client.stop(HUB, timeout=10)
    result = client.start(VmRef(vmid=200, node=NODE), timeout=10)
    assert result is not None
    finished = client.node_tasks(NODE, vmid=HUB_VMID, running=False)
    assert [t["type"] for t in finished] == ["qmstop"]
    assert client.node_tasks(NODE, vmid=HUB_VMID) == []
    # A task still running (its record put back to running, as a long start would be).
    task = pve.tasks[result.upid]
    task["status"] = "running"
    task.pop("exitstatus")
    task.pop("endtime")
    active = client.node_tasks(NODE, vmid=200)
    assert [t["upid"] for t in active] == [result.upid]


# ------------------------------------------------------------------ clone


def test_full_clone_of_a_snapshot_into_a_pool_on_another_node(pve: Any, client: ProxmoxClient) -> None:
    pve.add_node(OTHER_NODE)
    pve.add_ceph_storage("ceph-vm")
    pve.pools.setdefault(POOL, set())
    pve.add_vm(300, "hub-src", node=NODE, config={"scsi0": "ceph-vm:vm-300-disk-0,size=8G", "cores": 2})
    source = VmRef(vmid=300, node=NODE)
    assert client.take_snapshot(NODE, 300, name=SNAP, description="base", timeout=10) is not None

    result = client.clone(
        source,
        newid=301,
        name="exp-1",
        pool=POOL,
        snapname=SNAP,
        target=OTHER_NODE,
        storage="ceph-vm",
        description="experiment 1",
        timeout=30,
    )

    assert result.exitstatus == "OK"
    clone = pve.vm(301)
    assert clone.node == OTHER_NODE and clone.name == "exp-1"
    assert clone.config["scsi0"].startswith("ceph-vm:vm-301-disk-")
    assert clone.config["description"] == "experiment 1"
    assert 301 in pve.pools[POOL]
    listed = {vm.vmid: vm for vm in client.cluster_vms()}
    assert listed[301].ref == VmRef(vmid=301, node=OTHER_NODE) and listed[301].pool == POOL
    # The newid is taken now: asking again is a conflict, not a second clone.
    with pytest.raises(ProxmoxConflict):
        client.clone(source, newid=301, snapname=SNAP, timeout=30)


def test_linked_clone_of_a_snapshot_is_refused_before_anything_is_sent(
    pve: Any, client: ProxmoxClient
) -> None:
    with pytest.raises(ProxmoxBadRequest, match="full clone"):
        client.clone(HUB, newid=150, snapname=SNAP, full=False, timeout=10)
    assert _posts(pve, "/clone") == 0


def test_clone_whose_answer_was_lost_waits_for_the_task_it_started(pve: Any, client: ProxmoxClient) -> None:
    # The first clone runs; then a request whose answer is lost (502 from a proxy) is retried: the
    # retry finds 150 taken and this token's qmclone task of the source, and waits for that task
    # instead of cloning again.
    first = client.clone(HUB, newid=150, name="exp", timeout=30)
    pve.fail("POST", f"/qemu/{HUB_VMID}/clone", 502, "proxy: bad gateway", times=1)

    again = client.clone(HUB, newid=150, name="exp", timeout=30)

    assert again == first
    assert _posts(pve, "/clone") == 2  # the first clone and the lost one; no third
    assert [vm.vmid for vm in pve.vms].count(150) == 1


# --------------------------------------------------------------- rollback


def _snapshot_hub(client: ProxmoxClient) -> None:
    assert client.take_snapshot(NODE, HUB_VMID, name=SNAP, description="cp", timeout=10) is not None


def test_rollback_without_ram_state_leaves_the_vm_stopped_unless_asked_to_start(
    pve: Any, client: ProxmoxClient
) -> None:
    _snapshot_hub(client)
    client.update_vm_config(HUB, timeout=10, description="after the snapshot")

    client.rollback(HUB, SNAP, timeout=30)
    assert client.vm_status(HUB).status == "stopped"
    assert pve.vm(HUB_VMID).config["parent"] == SNAP

    client.rollback(HUB, SNAP, start=True, timeout=30)
    assert client.vm_status(HUB).status == "running"


def test_rollback_to_a_snapshot_with_ram_state_leaves_the_vm_running(pve: Any, client: ProxmoxClient) -> None:
    _snapshot_hub(client)
    # The client takes no RAM snapshots; give this one the state file a `vmstate=1` snapshot has.
    pve.vm(HUB_VMID).snapshots[SNAP]["vmstate"] = f"local-lvm:vm-{HUB_VMID}-state-{SNAP}"
    client.stop(HUB, timeout=10)

    client.rollback(HUB, SNAP, timeout=30)

    assert client.vm_status(HUB).status == "running"
    rollback = [body for m, path, body in pve.requests if m == "POST" and path.endswith("/rollback")]
    assert rollback == [b"start=1"]


def test_rollback_to_a_missing_snapshot_is_not_found(client: ProxmoxClient) -> None:
    with pytest.raises(ProxmoxNotFound):
        client.rollback(HUB, "hub-missing", timeout=10)


# ------------------------------------------------------------------ power


def test_power_actions_are_idempotent(pve: Any, client: ProxmoxClient) -> None:
    assert client.start(HUB, timeout=10) is None
    assert client.resume(HUB, timeout=10) is None
    assert _posts(pve, "/status/start") + _posts(pve, "/status/resume") == 0

    assert client.stop(HUB, timeout=10) is not None
    assert pve.vm(HUB_VMID).status == "stopped"
    assert client.stop(HUB, timeout=10) is None
    assert client.shutdown(HUB, timeout=10) is None
    assert _posts(pve, "/status/stop") == 1 and _posts(pve, "/status/shutdown") == 0

    assert client.start(HUB, timeout=10) is not None
    assert pve.vm(HUB_VMID).status == "running"
    assert client.shutdown(HUB, timeout=10) is not None
    assert pve.vm(HUB_VMID).status == "stopped"
    shutdown = [body for m, path, body in pve.requests if m == "POST" and path.endswith("/status/shutdown")]
    assert shutdown == [b"timeout=10&forceStop=1"]


def test_reboot_applies_pending_config_and_needs_a_running_vm(pve: Any, client: ProxmoxClient) -> None:
    client.update_vm_config(HUB, timeout=10, cores=2)
    assert {k: str(v) for k, v in pve.vm(HUB_VMID).pending.items()} == {"cores": "2"}
    assert client.reboot(HUB, timeout=10).exitstatus == "OK"
    assert str(pve.vm(HUB_VMID).config["cores"]) == "2" and pve.vm(HUB_VMID).pending == {}
    client.stop(HUB, timeout=10)
    with pytest.raises(ProxmoxConflict, match="not running"):
        client.reboot(HUB, timeout=10)


def test_resume_unpauses_a_paused_vm(pve: Any, client: ProxmoxClient) -> None:
    pve.vm(HUB_VMID).qmpstatus = "paused"
    assert client.vm_status(HUB).qmpstatus == "paused"
    assert client.resume(HUB, timeout=10) is not None
    assert client.vm_status(HUB).qmpstatus == "running"
    assert client.resume(HUB, timeout=10) is None


# ---------------------------------------------------------------- destroy


def test_destroy_twice_second_is_none(pve: Any, client: ProxmoxClient) -> None:
    with pytest.raises(ProxmoxConflict, match="running"):
        client.destroy(HUB, timeout=10)
    client.stop(HUB, timeout=10)
    assert client.destroy(HUB, timeout=10) is not None
    assert pve.vm(HUB_VMID) is None
    assert client.destroy(HUB, timeout=10) is None
    deletes = [path for m, path, _ in pve.requests if m == "DELETE"]
    assert deletes == [f"/api2/json/nodes/{NODE}/qemu/{HUB_VMID}"] * 3


# --------------------------------------------------------- failures, locks


def test_failed_task_raises_task_failed_with_its_exit_status(pve: Any, client: ProxmoxClient) -> None:
    client.stop(HUB, timeout=10)
    pve.fail("POST", f"/nodes/{NODE}/qemu/{HUB_VMID}/status/start", error="qemu_exited_code")
    with pytest.raises(ProxmoxTaskFailed) as failed:
        client.start(HUB, timeout=10)
    assert failed.value.exitstatus == "QEMU exited with code 1"
    assert failed.value.upid.startswith(f"UPID:{NODE}:")
    assert _posts(pve, "/status/start") == 1  # a failed task is not retried


def test_locked_vm_is_retried_within_the_lock_budget_then_fails(pve: Any, fakepve_cafile: str) -> None:
    delays: list[float] = []

    def sleep(seconds: float) -> None:
        delays.append(seconds)
        time.sleep(seconds)

    client = _client(pve, fakepve_cafile, sleep=sleep)
    client.stop(HUB, timeout=10)
    pve.snapshot_lock(HUB_VMID, "backup")
    started = time.monotonic()
    with pytest.raises(ProxmoxLockedError, match="backup"):
        client.start(HUB, timeout=10)
    assert time.monotonic() - started >= 1.0  # the whole lock budget was used
    assert _posts(pve, "/status/start") == len(delays) + 1 >= 2
    assert pve.vm(HUB_VMID).status == "stopped"


def test_lock_released_during_the_backoff_lets_the_action_through(pve: Any, fakepve_cafile: str) -> None:
    def sleep(_seconds: float) -> None:
        pve.unlock(HUB_VMID)  # the backup finished while we waited

    client = _client(pve, fakepve_cafile, sleep=sleep)
    client.stop(HUB, timeout=10)
    pve.snapshot_lock(HUB_VMID, "backup")
    assert client.start(HUB, timeout=10) is not None
    assert pve.vm(HUB_VMID).status == "running"
    assert _posts(pve, "/status/start") == 2
