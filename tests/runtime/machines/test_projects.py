"""Projects: CLI, schedules for the scheduler, and their retention rule applied to their machines'
checkpoints by the checkpoint service."""

from __future__ import annotations

import json
from typing import Any

from runtime.checkpoints.service import CheckpointService
from runtime.machines.lifecycle import MachineService
from runtime.machines.projects import ProjectStore
from tests.support.hubenv import HubEnv, one_line_error


def test_project_cli_create_set_show_list(sqlite_menv: HubEnv) -> None:
    made = sqlite_menv.run(
        "project", "create", "ci", "--cores", "8", "--machines", "2", "--budget", "50", "--json"
    )
    assert made.returncode == 0, made.stderr
    assert json.loads(made.stdout)["limits"] == {
        "cores": 8,
        "memory_mib": None,
        "disk_gb": None,
        "machines": 2,
    }
    changed = sqlite_menv.run(
        "project",
        "set",
        "ci",
        "--machines",
        "3",
        "--clear",
        "cores",
        "--checkpoint-schedule",
        "0 3 * * *",
        "--retention",
        '{"keep_last": 2}',
        "--json",
    )
    assert changed.returncode == 0, changed.stderr
    shown = json.loads(sqlite_menv.run("project", "show", "ci", "--json").stdout)
    assert shown["limits"]["machines"] == 3 and shown["limits"]["cores"] is None
    assert shown["checkpoint_schedule"] == "0 3 * * *" and shown["retention"]["keep_last"] == 2
    listed = json.loads(sqlite_menv.run("project", "list", "--json").stdout)["projects"]
    assert [p["name"] for p in listed] == ["ci"]
    again = sqlite_menv.run("project", "create", "ci")
    assert again.returncode == 2 and "exists already" in one_line_error(again.stderr)
    bad = sqlite_menv.run("project", "set", "ci", "--retention", '{"keep_forever": 1}')
    assert bad.returncode == 2 and "keep_forever" in one_line_error(bad.stderr)


def test_schedules_for_the_scheduler(sqlite_menv: HubEnv) -> None:
    store = ProjectStore(sqlite_menv.services().ready_db())
    store.create("a", checkpoint_schedule="0 1 * * *")
    store.create("b")
    store.create("c", checkpoint_schedule="manual")
    assert store.schedules() == [("a", "0 1 * * *")]


def test_a_projects_retention_prunes_its_machines_checkpoints(sqlite_menv: HubEnv, cluster: Any) -> None:
    services = sqlite_menv.services()
    ProjectStore(services.ready_db()).create("ci", retention={"keep_last": 2})
    svc = MachineService.build_from(services, actor="test")
    m = svc.create(project="ci", name="m1")
    for _ in range(4):
        svc.snapshot("m1")
    vm = cluster.vm(m.vm_id)
    # The manual label alone would keep 10; the project's rule keeps 2.
    assert len([n for n in vm.snapshots if n.startswith("hub-")]) == 2
    plan = CheckpointService.build(services, actor="test").plan(m.vm_id or 0)
    assert [item.keep for item in plan] == [True, True]
