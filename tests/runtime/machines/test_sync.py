"""Cluster sync: one request per pass, changes made outside the Hub noticed and recorded, idle
machines flagged (and optionally stopped), the foreign VM in the pool never touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runtime import audit
from runtime.machines.cluster_sync import sync_machines
from runtime.machines.lifecycle import MachineService
from runtime.machines.projects import ProjectStore
from runtime.machines.queries import list_machines
from tests.runtime.machines.conftest import machine_env
from tests.runtime.machines.helpers import untouched_foreign, writes
from tests.support.hubenv import HubEnv


def _machines(env: HubEnv, *names: str) -> dict[str, Any]:
    services = env.services()
    ProjectStore(services.ready_db()).create("ci")
    svc = MachineService.build_from(services, actor="test")
    return {name: svc.create(project="ci", name=name) for name in names}


def _actions(env: HubEnv, uuid: str) -> set[tuple[str, str]]:
    with env.services().ready_db().session() as s:
        entries, _ = audit.page(s, target=uuid, limit=100)
    return {(e["action"], e["outcome"]) for e in entries}


def test_changes_outside_the_hub_are_noticed_in_one_pass(menv: HubEnv, cluster: Any) -> None:
    made = _machines(menv, "m1", "m2", "m3")
    cluster.vm(made["m1"].vm_id).status = "stopped"  # stopped by someone else
    gone = cluster.vm(made["m2"].vm_id)
    cluster.vms.remove(gone)  # destroyed outside the Hub
    cluster.vm(made["m3"].vm_id).config["cores"] = 4  # resized outside the Hub
    before = len(cluster.requests)
    report = sync_machines(menv.services(), actor="test").to_public()
    # One request for the whole pass, not one per machine.
    assert [(m, p) for m, p, _ in cluster.requests[before:]] == [("GET", "/api2/json/cluster/resources")]
    assert report["vanished"] == ["m2"] and report["errors"] == []
    changed = {c["machine"]: c for c in report["changed"]}
    assert changed["m1"]["status"] == ["running", "stopped"] and changed["m3"]["cores"] == [1, 4]
    rows = {m.name: m for m in list_machines(menv.services().ready_db())}
    assert rows["m1"].status == "stopped" and rows["m2"].status == "missing" and rows["m3"].cores == 4
    assert ("machine.vanished", "completed") in _actions(menv, made["m2"].uuid)
    assert ("machine.changed", "completed") in _actions(menv, made["m1"].uuid)
    # A second pass finds nothing new.
    again = sync_machines(menv.services(), actor="test").to_public()
    assert again["vanished"] == [] and again["changed"] == []
    assert writes(cluster, before) == []
    untouched_foreign(cluster)


def test_a_machine_whose_tags_were_removed_is_let_go(sqlite_menv: HubEnv, cluster: Any) -> None:
    made = _machines(sqlite_menv, "m1")
    vm = cluster.vm(made["m1"].vm_id)
    vm.config["tags"] = "someone-else"
    report = sync_machines(sqlite_menv.services(), actor="test").to_public()
    assert report["vanished"] == ["m1"]
    [row] = list_machines(sqlite_menv.services().ready_db())
    assert row.status == "missing" and "tags" in (row.error or "")
    assert vm.status == "running" and cluster.vm(vm.vmid) is vm


def test_idle_machines_are_flagged_then_stopped_when_configured(
    cluster: Any, fakepve_cafile: str, tmp_path: Path, sqlite_url: str
) -> None:
    env = machine_env(
        cluster,
        fakepve_cafile,
        tmp_path,
        sqlite_url,
        HUB_IDLE_CPU_THRESHOLD="0.10",
        HUB_IDLE_SECONDS="600",
        HUB_IDLE_STOP="true",
    )
    made = _machines(env, "quiet", "busy")
    cluster.vm(made["busy"].vm_id).stats["cpu"] = 0.9
    t0 = datetime.now(UTC)
    first = sync_machines(env.services(), actor="test", clock=lambda: t0).to_public()
    assert first["idle"] == [] and first["stopped"] == []
    later = t0 + timedelta(seconds=601)
    second = sync_machines(env.services(), actor="test", clock=lambda: later).to_public()
    assert second["idle"] == ["quiet"] and second["stopped"] == ["quiet"]
    assert cluster.vm(made["quiet"].vm_id).status == "stopped"
    assert cluster.vm(made["busy"].vm_id).status == "running"
    assert ("machine.idle", "completed") in _actions(env, made["quiet"].uuid)
    assert ("machine.stop", "completed") in _actions(env, made["quiet"].uuid)
    untouched_foreign(cluster)


def test_the_cli_runs_one_pass(sqlite_menv: HubEnv, cluster: Any) -> None:
    import json

    made = _machines(sqlite_menv, "m1")
    cluster.vms.remove(cluster.vm(made["m1"].vm_id))
    result = sqlite_menv.run("machine", "sync", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["vanished"] == ["m1"]
    start = sqlite_menv.run("machine", "start", "m1")
    assert start.returncode == 1 and "no longer in the cluster" in start.stderr
    released = sqlite_menv.run("machine", "destroy", "m1", "--json")
    assert released.returncode == 0 and json.loads(released.stdout)["status"] == "destroyed"


def test_a_create_nobody_resumes_is_settled_as_failed(sqlite_menv: HubEnv, cluster: Any) -> None:
    services = sqlite_menv.services()
    ProjectStore(services.ready_db()).create("ci")
    reserved = MachineService.build_from(services, actor="test").reserve(project="ci", name="m1")
    soon = datetime.now(UTC) + timedelta(seconds=60)
    sync_machines(services, actor="test", clock=lambda: soon)
    assert MachineService.build_from(services, actor="test").show(reserved.uuid).status == "creating"
    late = datetime.now(UTC) + timedelta(seconds=4 * services.settings.longest_vm_operation_seconds)
    sync_machines(services, actor="test", clock=lambda: late)
    row = MachineService.build_from(services, actor="test").show(reserved.uuid)
    assert row.status == "failed" and "--name m1" in (row.error or "")
    # Its capacity stays held until it is destroyed; destroying a machine with no VM releases it.
    assert MachineService.build_from(services, actor="test").destroy("m1").status == "destroyed"
