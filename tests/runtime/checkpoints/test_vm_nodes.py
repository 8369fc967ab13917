"""A checkpoint goes to the node its VM is on, as the cluster says, never to HUB_NODE by assumption."""

from __future__ import annotations

import json
from typing import Any

from tests.support.hubenv import HubEnv, one_line_error

OTHER_VMID = 101


def _vm_on_pve2(pve: Any) -> None:
    pve.add_node("pve2")
    pve.add_vm(
        OTHER_VMID,
        "worker",
        node="pve2",
        status="running",
        config={"scsi0": "local-lvm:vm-101-disk-0,size=8G", "cores": 1, "memory": 1024},
    )


def test_checkpoint_of_a_vm_on_another_node_goes_to_that_node(sqlite_hubenv: HubEnv, pve: Any) -> None:
    _vm_on_pve2(pve)
    result = sqlite_hubenv.run("checkpoint", "create", "--vmid", str(OTHER_VMID), "--json")
    assert result.returncode == 0, result.stderr
    cp = json.loads(result.stdout)
    assert cp["node"] == "pve2" and cp["vm_id"] == OTHER_VMID and cp["status"] == "completed"
    assert cp["snapname"] in pve.vm(OTHER_VMID).snapshots
    posts = [p for m, p, _ in pve.requests if m == "POST" and p.endswith("/snapshot")]
    assert posts == [f"/api2/json/nodes/pve2/qemu/{OTHER_VMID}/snapshot"]
    # and the rest of its life follows the VM too
    again = sqlite_hubenv.run("reconcile", "--vmid", str(OTHER_VMID), "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["changes"] == []
    deleted = sqlite_hubenv.run("checkpoint", "delete", cp["uuid"], "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert cp["snapname"] not in pve.vm(OTHER_VMID).snapshots


def test_a_migrated_vm_is_followed_to_its_new_node(sqlite_hubenv: HubEnv, pve: Any) -> None:
    first = json.loads(sqlite_hubenv.run("checkpoint", "create", "--json").stdout)
    assert first["node"] == "pve1"
    pve.add_node("pve2")
    pve.vm(100).node = "pve2"  # migrated (by an operator or HA) since the row was written
    second = sqlite_hubenv.run("checkpoint", "create", "--json")
    assert second.returncode == 0, second.stderr
    assert json.loads(second.stdout)["node"] == "pve2"
    deleted = sqlite_hubenv.run("checkpoint", "delete", first["uuid"], "--json")
    assert deleted.returncode == 0, deleted.stderr
    assert first["snapname"] not in pve.vm(100).snapshots


def test_an_unknown_vm_is_refused_before_anything_is_written(sqlite_hubenv: HubEnv, pve: Any) -> None:
    result = sqlite_hubenv.run("checkpoint", "create", "--vmid", "4242", "--json")
    assert result.returncode == 2
    assert "no VM 4242" in one_line_error(result.stderr)
    assert not [r for r in pve.requests if r[0] == "POST"]
    assert json.loads(sqlite_hubenv.run("checkpoint", "list", "--json").stdout) == {"checkpoints": []}


def test_reconcile_all_covers_every_vm_in_one_process(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """One cluster listing and one snapshot list per VM; a VM that is gone is reported, not fatal."""
    _vm_on_pve2(pve)
    for vmid in ("100", str(OTHER_VMID)):
        assert sqlite_hubenv.run("checkpoint", "create", "--vmid", vmid).returncode == 0
    gone = json.loads(sqlite_hubenv.run("checkpoint", "create", "--vmid", str(OTHER_VMID), "--json").stdout)
    pve.vm(OTHER_VMID).snapshots.pop(gone["snapname"])  # removed by hand on Proxmox
    before = len(pve.requests)
    result = sqlite_hubenv.run("reconcile", "--all", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert sorted(r["vm_id"] for r in doc["vms"]) == [100, OTHER_VMID] and doc["failed"] == []
    changes = [c for r in doc["vms"] for c in r["changes"]]
    assert changes == [{"uuid": gone["uuid"], "action": "deleted", "why": "snapshot missing on Proxmox"}]
    paths = [p for _, p, _ in pve.requests[before:]]
    assert sum(p.endswith("/cluster/resources") for p in paths) == 1
    assert sum(p.endswith("/snapshot") for p in paths) == 2
    pve.vms.remove(pve.vm(OTHER_VMID))  # destroyed outside the Hub
    partial = sqlite_hubenv.run("reconcile", "--all", "--json")
    assert partial.returncode == 0, partial.stderr
    failed = json.loads(partial.stdout)["failed"]
    assert [f["vm_id"] for f in failed] == [OTHER_VMID] and "no VM 101" in failed[0]["error"]
