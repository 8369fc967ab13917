"""The machines, projects and budget routers over a real ``hubctl serve``."""

from __future__ import annotations

from typing import Any

import requests

from tests.runtime.machines.helpers import machine_vms, untouched_foreign
from tests.support.service import Service


def test_projects_machines_and_budget_over_http(machine_service: Service, cluster: Any) -> None:
    api = machine_service
    made = api.post("/api/v1/projects", {"name": "web", "cores": 4, "budget": 100})
    assert made.status_code == 201, made.text
    r = requests.patch(
        api.url + "/api/v1/projects/web",
        json={"machines": 2, "cores": None},
        headers=api.headers(),
        timeout=30,
    )
    assert r.status_code == 200 and r.json()["limits"] == {
        "cores": None,
        "memory_mib": None,
        "disk_gb": None,
        "machines": 2,
    }
    bad = api.post("/api/v1/machines", {"project": "web", "name": "Not_A_Name"})
    assert bad.status_code == 422 and set(bad.json()) == {"error", "detail"}
    unknown = api.post("/api/v1/machines", {"project": "nope"})
    assert unknown.status_code == 404 and unknown.json()["error"] == "not_found"

    accepted = api.post("/api/v1/machines", {"project": "web", "name": "w1", "cores": 2})
    assert accepted.status_code == 202 and accepted.headers["Location"].startswith("/api/v1/jobs/")
    assert api.wait_job(accepted.json()["job"]["id"])["state"] == "succeeded"
    shown = api.get("/api/v1/machines/w1").json()
    assert shown["status"] == "running" and shown["cores"] == 2
    assert [m["name"] for m in api.get("/api/v1/machines?project=web").json()["machines"]] == ["w1"]

    stop = api.post("/api/v1/machines/w1/stop")
    assert stop.status_code == 202 and api.wait_job(stop.json()["id"])["state"] == "succeeded"
    assert cluster.vm(shown["vm_id"]).status == "stopped"
    gone = api.delete("/api/v1/machines/w1")
    assert gone.status_code == 202 and api.wait_job(gone.json()["id"])["state"] == "succeeded"
    assert machine_vms(cluster) == [] and api.get("/api/v1/machines/w1").status_code == 404
    [budget] = api.get("/api/v1/budget").json()["projects"]
    assert budget["project"] == "web" and budget["usage"]["machines"] == 0
    untouched_foreign(cluster)
