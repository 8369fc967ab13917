"""The fleet over HTTP, through the real ``hubctl serve`` on PostgreSQL + Redis: ``POST
/api/v1/fleet/checkpoints`` queues a ``fleet.checkpoint`` job whose result is the per-VM JSON; a bad
body is refused before a job exists; the service's reconcile at start covers the owned machines."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.runtime.fleet import cluster
from tests.support.hubenv import make_env
from tests.support.service import Service, serve


@pytest.fixture
def fleet_service(
    fleet: Any, fakepve_cafile: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> Iterator[Service]:
    # Left by a rolled-back Hub before the service starts: its reconcile at start must find it.
    fleet.orphan = cluster.hub_snapshot(fleet, 302)
    env = make_env(
        fleet, fakepve_cafile, tmp_path, postgres_url, HUB_REDIS_URL=redis_url, HUB_POOL=cluster.POOL
    )
    yield from serve(env)


def test_fleet_checkpoint_is_a_job_with_per_vm_results(fleet_service: Service, fleet: Any) -> None:
    svc = fleet_service
    fleet.vm(203).config["scsi0"] = "local:203/vm-203-disk-0.raw,size=8G"  # cannot snapshot
    answer = svc.post(
        "/api/v1/fleet/checkpoints", {"project": "alpha", "max_parallel": 3, "label": "nightly"}
    )
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert job["kind"] == "fleet.checkpoint" and answer.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    done = svc.wait_job(job["id"])
    # The job ran: it succeeded, and its result says which VM did not get its checkpoint.
    assert done["state"] == "succeeded", done
    result = done["result"]
    assert (result["total"], result["completed"], result["failed"]) == (6, 5, 1)
    failed = [r for r in result["results"] if r["status"] != "completed"]
    assert [(r["vm_id"], r["node"], r["status"]) for r in failed] == [(203, cluster.node_of(203), "failed")]
    assert "snapshot feature is not available" in failed[0]["error"]
    labels = {c["label"] for c in svc.get("/api/v1/checkpoints", params={"vm_id": 201}).json()["items"]}
    assert labels == {"nightly"}
    for vmid in (*cluster.FOREIGN, *cluster.BETA):
        assert not [p for m, p in cluster.touched(fleet, vmid) if m != "GET"]


def test_a_bad_body_is_422_and_queues_nothing(fleet_service: Service) -> None:
    svc = fleet_service
    before = svc.get("/api/v1/jobs").json()["total"]
    for body in (
        {},
        {"project": "alpha", "all": True},
        {"tag": "not a tag"},
        {"all": True, "max_parallel": 0},
        {"all": True, "kind": "imported"},
        {"all": True, "vmid": 100},
    ):
        answer = svc.post("/api/v1/fleet/checkpoints", body)
        assert answer.status_code == 422, (body, answer.text)
    assert svc.get("/api/v1/jobs").json()["total"] == before


def test_reconcile_at_start_covers_owned_machines(fleet_service: Service, fleet: Any) -> None:
    items = fleet_service.get("/api/v1/checkpoints", params={"vm_id": 302}).json()["items"]
    assert [(c["uuid"], c["status"]) for c in items] == [(fleet.orphan, "completed")]
