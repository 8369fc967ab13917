"""The full lifecycle of a task machine against a three-node fakepve, through the real CLI."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from tests.runtime.machines.conftest import POOL, TEMPLATE
from tests.runtime.machines.helpers import untouched_foreign, writes
from tests.support.hubenv import HubEnv, one_line_error


def _ok(env: HubEnv, *args: str) -> dict[str, Any]:
    result = env.run(*args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_full_lifecycle(menv: HubEnv, cluster: Any) -> None:
    _ok(menv, "project", "create", "ci", "--machines", "3", "--cores", "8")
    m = _ok(
        menv,
        "machine",
        "create",
        "--project",
        "ci",
        "--name",
        "build-1",
        "--cores",
        "2",
        "--memory-mib",
        "2048",
        "--disk-gb",
        "20",
        "--network",
        "tasknet2",
    )
    assert {k: m[k] for k in ("name", "project", "status", "cores", "memory_mib", "disk_gb")} == {
        "name": "build-1",
        "project": "ci",
        "status": "running",
        "cores": 2,
        "memory_mib": 2048,
        "disk_gb": 20,
    }
    vm = cluster.vm(m["vm_id"])
    # Cloned from the template on its node (pve2, not the Hub's), into the pool, with the marker.
    assert vm.node == "pve2" == m["node"] and vm.pool == POOL and vm.status == "running"
    assert vm.config["tags"] == "hub-machine;hub-project-ci"
    assert f"hub-machine-uuid: {m['uuid']}" in vm.config["description"]
    assert (vm.config["cores"], vm.config["memory"]) == ("2", "2048")
    assert vm.config["net0"] == "virtio,bridge=tasknet2"
    assert vm.config["ciuser"] == "hub"
    assert unquote(vm.config["sshkeys"]).strip() == "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test@hub"
    # Every step went through the API: clone of the template, config, disk grown to 20G, start.
    paths = writes(cluster)
    assert ("POST", f"/api2/json/nodes/pve2/qemu/{TEMPLATE}/clone") in paths
    resize = [body for _meth, path, body in cluster.requests if path.endswith(f"/qemu/{vm.vmid}/resize")]
    assert resize and "20G" in str(resize[0])
    assert ("POST", f"/api2/json/nodes/pve2/qemu/{vm.vmid}/status/start") in paths

    listed = _ok(menv, "machine", "list", "--project", "ci")["machines"]
    assert [x["uuid"] for x in listed] == [m["uuid"]]
    assert _ok(menv, "machine", "show", m["uuid"][:8])["name"] == "build-1"

    snap = _ok(menv, "machine", "snapshot", "build-1")
    cp = snap["checkpoint"]
    assert cp["vm_id"] == vm.vmid and cp["status"] == "completed" and cp["snapname"] in vm.snapshots

    assert _ok(menv, "machine", "stop", "build-1")["status"] == "stopped"
    assert vm.status == "stopped"
    assert _ok(menv, "machine", "start", "build-1")["status"] == "running"
    assert vm.status == "running"
    assert _ok(menv, "machine", "destroy", "build-1")["status"] == "destroyed"
    assert cluster.vm(vm.vmid) is None
    # A second destroy is done already; the machine is still found by its uuid.
    assert _ok(menv, "machine", "destroy", m["uuid"])["status"] == "destroyed"
    untouched_foreign(cluster)


def test_every_step_is_audited(sqlite_menv: HubEnv, cluster: Any) -> None:
    _ok(sqlite_menv, "project", "create", "ci")
    m = _ok(sqlite_menv, "machine", "create", "--project", "ci", "--name", "a1")
    _ok(sqlite_menv, "machine", "destroy", "a1")
    from runtime import audit

    with sqlite_menv.services().ready_db().session() as s:
        entries, _ = audit.page(s, target=m["uuid"], limit=50)
    seen = {(e["action"], e["outcome"]) for e in entries}
    assert {
        ("machine.reserve", "completed"),
        ("machine.create", "cloned"),
        ("machine.create", "completed"),
        ("machine.destroy", "started"),
        ("machine.destroy", "completed"),
    } <= seen


def test_a_machine_whose_marker_is_gone_is_never_touched(sqlite_menv: HubEnv, cluster: Any) -> None:
    _ok(sqlite_menv, "project", "create", "ci")
    m = _ok(sqlite_menv, "machine", "create", "--project", "ci", "--name", "a1")
    vm = cluster.vm(m["vm_id"])
    vm.config["description"] = "taken over by someone"  # the uuid line removed outside the Hub
    before = len(cluster.requests)
    for action in ("stop", "destroy", "snapshot"):
        result = sqlite_menv.run("machine", action, "a1")
        assert result.returncode == 1, result.stderr
        assert "marker" in one_line_error(result.stderr)
    assert writes(cluster, before) == []
    assert cluster.vm(vm.vmid) is vm and vm.status == "running" and not vm.snapshots


def test_bad_input_is_one_line(sqlite_menv: HubEnv) -> None:
    for args, code in (
        (("project", "create", "Bad_Name"), 2),
        (("machine", "create", "--project", "nope"), 2),
        (("machine", "show", "nothing-here"), 2),
        (("project", "create", "p1", "--checkpoint-schedule", "61 * * * *"), 2),
    ):
        result = sqlite_menv.run(*args)
        assert result.returncode == code, (args, result.stderr)
        one_line_error(result.stderr)


def test_linked_clones_when_configured(
    cluster: Any, fakepve_cafile: str, tmp_path: Any, sqlite_url: str
) -> None:
    from tests.runtime.machines.conftest import machine_env

    env = machine_env(cluster, fakepve_cafile, tmp_path, sqlite_url, HUB_MACHINE_FULL_CLONE="false")
    _ok(env, "project", "create", "ci")
    m = _ok(env, "machine", "create", "--project", "ci", "--name", "linked")
    [body] = [b for meth, p, b in cluster.requests if meth == "POST" and p.endswith("/clone")]
    assert "full=0" in str(body) or "'full': '0'" in str(body), body
    assert cluster.vm(m["vm_id"]).status == "running"


def test_a_machine_migrated_to_another_node_is_followed(sqlite_menv: HubEnv, cluster: Any) -> None:
    _ok(sqlite_menv, "project", "create", "ci")
    m = _ok(sqlite_menv, "machine", "create", "--project", "ci", "--name", "mover")
    cluster.vm(m["vm_id"]).node = "pve3"  # migrated by an operator (or HA)
    stopped = _ok(sqlite_menv, "machine", "stop", "mover")
    assert stopped["node"] == "pve3" and cluster.vm(m["vm_id"]).status == "stopped"
    assert ("POST", f"/api2/json/nodes/pve3/qemu/{m['vm_id']}/status/shutdown") in writes(cluster)
