"""Quota and budget refusals happen before any Proxmox request, and the last slot has one winner."""

from __future__ import annotations

import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from runtime.machines.projects import ProjectStore
from tests.runtime.machines.conftest import machine_env
from tests.runtime.machines.helpers import machine_vms, untouched_foreign, wait_paused
from tests.support.hubenv import HubEnv, one_line_error
from tests.support.service import Service


def _create(env: HubEnv, name: str, *extra: str) -> Any:
    return env.run("machine", "create", "--project", "ci", "--name", name, *extra)


@pytest.mark.parametrize(
    ("limits", "request_", "named"),
    [
        ({"machines": 1}, (), "machines limit 1 would be exceeded: 1 in use + 1 requested = 2"),
        ({"cores": 3}, ("--cores", "2"), "cores limit 3 would be exceeded: 2 in use + 2 requested = 4"),
        (
            {"memory_mib": 3000},
            ("--memory-mib", "2048"),
            "memory-mib limit 3000 would be exceeded: 2048 in use",
        ),
        (
            {"disk_gb": 30},
            ("--disk-gb", "20"),
            "disk-gb limit 30 would be exceeded: 20 in use + 20 requested = 40",
        ),
    ],
)
def test_each_project_limit_refuses_before_any_proxmox_request(
    menv: HubEnv, cluster: Any, limits: dict[str, Any], request_: tuple[str, ...], named: str
) -> None:
    ProjectStore(menv.services().ready_db()).create("ci", **limits)
    assert _create(menv, "m1", *request_).returncode == 0
    before = len(cluster.requests)
    result = _create(menv, "m2", *request_)
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "project 'ci'" in line and named in line, line
    assert cluster.requests[before:] == []  # not one request: not even a read
    assert len(machine_vms(cluster)) == 1


def test_the_hubs_pool_limit_spans_projects(
    cluster: Any, fakepve_cafile: str, tmp_path: Path, sqlite_url: str
) -> None:
    env = machine_env(cluster, fakepve_cafile, tmp_path, sqlite_url, HUB_POOL_MAX_MACHINES="1")
    store = ProjectStore(env.services().ready_db())
    store.create("ci")
    store.create("web")
    assert _create(env, "m1").returncode == 0
    before = len(cluster.requests)
    result = env.run("machine", "create", "--project", "web", "--name", "w1")
    assert result.returncode == 1
    assert "the Hub's pool: machines limit 1 would be exceeded: 1 in use" in one_line_error(result.stderr)
    assert cluster.requests[before:] == []


def test_a_project_over_budget_gets_no_new_machine(sqlite_menv: HubEnv, cluster: Any) -> None:
    store = ProjectStore(sqlite_menv.services().ready_db())
    store.create("ci", budget=10)
    with sqlite_menv.services().ready_db().session() as s:
        from runtime.db.models import Project

        s.get_one(Project, "ci").spent = 10.5
    before = len(cluster.requests)
    result = _create(sqlite_menv, "m1")
    assert result.returncode == 1
    assert "budget 10 spent (10.50)" in one_line_error(result.stderr)
    assert cluster.requests[before:] == []
    store.set("ci", budget=20)  # raised: machines again
    assert _create(sqlite_menv, "m1").returncode == 0


def test_two_processes_racing_for_the_last_slot_one_wins(menv: HubEnv, cluster: Any) -> None:
    """A holds the reservation between its check and its insert; B is let in to check meanwhile.
    Without the row lock (PostgreSQL) or BEGIN IMMEDIATE (SQLite), B would read the same usage and
    both would win."""
    ProjectStore(menv.services().ready_db()).create("ci", machines=1)
    a = menv.spawn(
        "machine",
        "create",
        "--project",
        "ci",
        "--name",
        "a",
        "--json",
        HUB_FAILPOINT="machine.reserving=pause",
    )
    b = None
    try:
        wait_paused(a, "machine.reserving")  # A checked, holds the lock, not written
        b = menv.spawn(
            "machine",
            "create",
            "--project",
            "ci",
            "--name",
            "b",
            "--json",
            HUB_FAILPOINT="machine.reserve_begin=pause",
        )
        wait_paused(b, "machine.reserve_begin")
        b.send_signal(signal.SIGCONT)  # B goes for the lock (and waits for A)
        time.sleep(1.0)  # let B get to its lock request; a slower B only makes this a sequential run
        a.send_signal(signal.SIGCONT)
        out_a, err_a = a.communicate(timeout=120)
        out_b, err_b = b.communicate(timeout=120)
    finally:
        for p in (a, b):
            if p is not None and p.poll() is None:
                p.kill()
                p.communicate()
    assert b is not None
    assert a.returncode == 0, err_a
    assert b.returncode == 1, err_b
    assert json.loads(out_a)["status"] == "running"
    assert "machines limit 1 would be exceeded: 1 in use + 1 requested" in json.loads(out_b)["error"]
    assert [vm.name for vm in machine_vms(cluster)] == ["a"]
    untouched_foreign(cluster)


def test_two_api_calls_racing_for_the_last_slot_one_wins(machine_service: Service, cluster: Any) -> None:
    machine_service.post("/api/v1/projects", {"name": "ci", "machines": 1}).raise_for_status()
    answers: list[Any] = []
    go = threading.Barrier(2)

    def call(name: str) -> None:
        go.wait()
        answers.append(machine_service.post("/api/v1/machines", {"project": "ci", "name": name}))

    threads = [threading.Thread(target=call, args=(n,)) for n in ("x1", "x2")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    codes = sorted(a.status_code for a in answers)
    assert codes == [202, 409], [a.text for a in answers]
    won = next(a for a in answers if a.status_code == 202).json()
    lost = next(a for a in answers if a.status_code == 409).json()
    assert lost["error"] == "quota_exceeded" and "machines limit 1" in lost["detail"]
    assert set(lost) == {"error", "detail"}
    job = machine_service.wait_job(won["job"]["id"])
    assert job["state"] == "succeeded", job
    assert len(machine_vms(cluster)) == 1
    budget = machine_service.get("/api/v1/budget?project=ci").json()["projects"][0]
    assert budget["usage"]["machines"] == 1 and budget["limits"]["machines"] == 1
