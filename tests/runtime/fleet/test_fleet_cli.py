"""``hubctl fleet checkpoint`` as a real process against a three-node fakepve: what it selects, what
it never touches (fakepve's request log), and how one VM's failure or lock leaves the rest alone."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from runtime.locks import FileLocks, vm_lock_name
from tests.runtime.fleet import cluster
from tests.support.hubenv import HUB_VMID, HubEnv, hub_snapshots, one_line_error


def run_json(env: HubEnv, *args: str, **overrides: str) -> tuple[int, dict[str, Any]]:
    done = env.run("fleet", "checkpoint", *args, "--json", **overrides)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def assert_foreign_untouched(pve: Any) -> None:
    for vmid in cluster.FOREIGN:
        assert cluster.touched(pve, vmid) == [], f"foreign VM {vmid} was called"
        assert pve.vm(vmid).snapshots == {}


def test_project_checkpoints_its_machines_and_nothing_else(fleet_env: HubEnv, fleet: Any) -> None:
    code, doc = run_json(fleet_env, "--project", "alpha", "--max-parallel", "3", "--per-node", "1")
    assert code == 0
    assert {"total", "completed", "failed", "results"} <= doc.keys()
    assert (doc["total"], doc["completed"], doc["failed"]) == (len(cluster.ALPHA), len(cluster.ALPHA), 0)
    assert [r["vm_id"] for r in doc["results"]] == list(cluster.ALPHA)
    for r in doc["results"]:
        assert {"vm_id", "node", "status", "error"} <= r.keys()
        assert (r["node"], r["status"], r["error"]) == (cluster.node_of(r["vm_id"]), "completed", None)
        assert len(hub_snapshots(fleet, r["vm_id"])) == 1  # one checkpoint, on its own node
    # Beta's machines, the Hub VM and every look-alike: not one request.
    for vmid in (*cluster.BETA, HUB_VMID):
        assert cluster.touched(fleet, vmid) == []
    assert_foreign_untouched(fleet)
    rows = json.loads(fleet_env.run("checkpoint", "list", "--vmid", "203", "--json").stdout)["checkpoints"]
    assert [(c["status"], c["kind"]) for c in rows] == [("completed", "manual")]


def test_tag_and_all_select_owned_vms_only(fleet_env: HubEnv, fleet: Any) -> None:
    code, doc = run_json(fleet_env, "--tag", "gpu")
    assert code == 0 and [r["vm_id"] for r in doc["results"]] == list(cluster.GPU)  # not 401, 402

    code, doc = run_json(fleet_env, "--all", "--label", "nightly")
    assert code == 0
    assert [r["vm_id"] for r in doc["results"]] == [HUB_VMID, *cluster.MACHINES]
    assert doc["completed"] == doc["total"] == 1 + len(cluster.MACHINES)
    assert_foreign_untouched(fleet)


def test_without_a_pool_only_the_hub_vm_is_owned(fleet_env: HubEnv, fleet: Any) -> None:
    no_pool = HubEnv(values={k: v for k, v in fleet_env.values.items() if k != "HUB_POOL"}, tmp=fleet_env.tmp)
    code, doc = run_json(no_pool, "--all")
    assert code == 0 and [r["vm_id"] for r in doc["results"]] == [HUB_VMID]
    for vmid in cluster.MACHINES:
        assert cluster.touched(fleet, vmid) == []


def test_an_empty_selection_says_so_and_succeeds(fleet_env: HubEnv, fleet: Any) -> None:
    code, doc = run_json(fleet_env, "--tag", "no-such-tag")
    assert code == 0 and (doc["total"], doc["completed"], doc["failed"], doc["results"]) == (0, 0, 0, [])
    human = fleet_env.run("fleet", "checkpoint", "--project", "nobody")
    assert human.returncode == 0, human.stderr
    assert "no VM selected" in human.stdout and "project 'nobody'" in human.stdout
    assert not [r for r in fleet.requests if r[0] != "GET"]


def test_bad_usage_is_one_line_and_exit_2(fleet_env: HubEnv, fleet: Any) -> None:
    for args, says in (
        (("--project", "alpha", "--all"), "exactly one of"),
        ((), "exactly one of"),
        (("--tag", "not a tag"), "not a valid Proxmox tag"),
        (("--all", "--max-parallel", "0"), "--max-parallel"),
        (("--all", "--per-node", "1000"), "--per-node"),
        (("--all", "--kind", "imported"), "reserved"),
        (("--all", "--label", "Bad Label"), "--label"),
    ):
        done = fleet_env.run("fleet", "checkpoint", *args)
        assert done.returncode == 2, (args, done.stderr)
        assert says in one_line_error(done.stderr), args
    assert fleet.requests == []  # refused before any Proxmox request


def test_failures_and_locks_never_stop_the_rest(fleet_env: HubEnv, fleet: Any, tmp_path: Path) -> None:
    # 202: its disk cannot be snapshotted (PVE: "snapshot feature is not available").
    fleet.vm(202).config["scsi0"] = "local:202/vm-202-disk-0.raw,size=8G"
    # 204: a backup holds its Proxmox config lock for longer than our lock budget (3 s in tests).
    fleet.snapshot_lock(204, "backup")
    # 205: another Hub operation holds the Hub's own lock on it for the whole run.
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with FileLocks(tmp_path / "locks").hold(vm_lock_name(205), wait=0):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(10)
    try:
        code, doc = run_json(
            fleet_env, "--project", "alpha", "--max-parallel", "2", HUB_LOCK_WAIT_SECONDS="1"
        )
    finally:
        release.set()
        holder.join()

    assert code == 1
    by_vm = {r["vm_id"]: r for r in doc["results"]}
    assert (doc["total"], doc["completed"], doc["failed"]) == (6, 3, 3)
    assert {v for v, r in by_vm.items() if r["status"] == "completed"} == {201, 203, 206}
    assert by_vm[202]["status"] == "failed" and "snapshot feature is not available" in by_vm[202]["error"]
    assert by_vm[204]["status"] == "failed" and "locked" in by_vm[204]["error"]
    assert by_vm[205]["status"] == "failed" and "lock" in by_vm[205]["error"]
    assert by_vm[205]["checkpoint"] is None  # refused before anything was marked
    assert cluster.touched(fleet, 205) == []  # and before any Proxmox call
    for vmid in (202, 204):
        assert hub_snapshots(fleet, vmid) == {}  # nothing partial left behind
        rows = json.loads(fleet_env.run("checkpoint", "list", "--vmid", str(vmid), "--json").stdout)
        assert [c["status"] for c in rows["checkpoints"]] == ["failed"]
    for vmid in (201, 203, 206):
        assert len(hub_snapshots(fleet, vmid)) == 1
    assert_foreign_untouched(fleet)


def test_the_summary_names_what_failed(fleet_env: HubEnv, fleet: Any) -> None:
    fleet.vm(302).config["scsi0"] = "local:302/vm-302-disk-0.raw,size=8G"
    done = fleet_env.run("fleet", "checkpoint", "--project", "beta")
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "VM 302 on pve3: failed" in done.stdout
    assert "2 of 3 VM(s) checkpointed, 1 not" in done.stdout
