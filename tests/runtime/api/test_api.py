"""The HTTP API through the real `hubctl serve` process: PostgreSQL, Redis, the Dramatiq worker and
fakepve are all real. One module-level service per backend combination keeps the suite quick."""

from __future__ import annotations

import re
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import requests

from runtime.db import Checkpoint
from runtime.db.models import new_uuid
from tests.support.hubenv import hub_snapshots, make_env
from tests.support.service import Service, free_port, make_token


def test_liveness_needs_no_token_and_everything_else_does(service: Service) -> None:
    assert requests.get(service.url + "/healthz", timeout=5).json() == {"status": "ok"}
    for path in ("/api/v1/checkpoints", "/api/v1/jobs", "/api/v1/audit", "/api/v1/health", "/metrics"):
        missing = requests.get(service.url + path, timeout=5)
        assert missing.status_code == 401 and missing.headers["WWW-Authenticate"] == "Bearer"
        bad = requests.get(
            service.url + path, headers=service.headers("hub_0123456789abcdef_" + "x" * 43), timeout=5
        )
        assert bad.status_code == 401
        assert service.get(path).status_code == 200
    assert requests.post(service.url + "/api/v1/checkpoints", json={}, timeout=5).status_code == 401


def test_revoked_token_is_refused(service: Service) -> None:
    other = make_token(service.env, "short-lived")
    assert service.get("/api/v1/jobs", headers=service.headers(other)).status_code == 200
    assert service.env.run("token", "revoke", "short-lived").returncode == 0
    # Refused within VERIFIED_FOR seconds (runtime/api/deps.py); the wait here is only an upper bound
    # for a slow machine, tests/runtime/api/test_token_cache.py checks the bound itself.
    deadline = time.monotonic() + 30
    while service.get("/api/v1/jobs", headers=service.headers(other)).status_code != 401:
        assert time.monotonic() < deadline, "a revoked token was still accepted after 30 s"
        time.sleep(0.2)
    names = {
        t["name"]: t
        for t in __import__("json").loads(service.env.run("token", "list", "--json").stdout)["tokens"]
    }
    assert names["short-lived"]["revoked_at"] and "token" not in names["short-lived"]


def test_checkpoint_through_the_api_is_a_job(service: Service, pve: Any) -> None:
    created = service.post("/api/v1/checkpoints", {"kind": "manual", "reason": "via api"})
    assert created.status_code == 202
    job = created.json()
    assert created.headers["Location"] == f"/api/v1/jobs/{job['id']}"
    assert job["state"] in ("queued", "running", "succeeded")
    done = service.wait_job(job["id"])
    assert done["state"] == "succeeded", done
    cp = done["result"]
    assert cp["status"] == "completed" and cp["reason"] == "via api"
    assert any("verified" in line for line in done["progress"])  # progress reached the job row
    assert cp["snapname"] in hub_snapshots(pve)
    shown = service.get(f"/api/v1/checkpoints/{cp['uuid']}").json()
    assert shown["status"] == "completed"
    audit = service.get("/api/v1/audit", params={"target": job["id"]}).json()["items"]
    assert {(a["action"], a["actor"]) for a in audit} >= {
        ("job.submit", "api:tests"),
        ("job.checkpoint.create", "api:tests"),
    }
    gone = service.delete(f"/api/v1/checkpoints/{cp['uuid']}")
    assert gone.status_code == 202
    assert service.wait_job(gone.json()["id"])["result"]["status"] == "deleted"
    assert hub_snapshots(pve) == {}


def test_a_failing_job_reports_its_error(service: Service, pve: Any) -> None:
    pve.fail("POST", "/nodes/pve1/qemu/100/snapshot", error="snapshot_feature_not_available")
    job = service.post("/api/v1/checkpoints", {}).json()
    done = service.wait_job(job["id"])
    assert done["state"] == "failed"
    assert "snapshot feature is not available" in done["error"]
    failed = service.get("/api/v1/checkpoints", params={"status": "failed"}).json()
    assert failed["total"] == 1


def test_pagination(service: Service) -> None:
    base = datetime(2026, 11, 1, tzinfo=UTC)
    with service.env.services().db.session() as s:
        for i in range(7):
            uuid = new_uuid()
            s.add(
                Checkpoint(
                    uuid=uuid,
                    vm_id=100,
                    node="pve1",
                    snapname="hub-" + uuid.replace("-", ""),
                    kind="manual",
                    status="completed",
                    created_at=base + timedelta(hours=i),
                    protected=False,
                )
            )
    pages = [service.get("/api/v1/checkpoints", params={"limit": 3, "offset": o}).json() for o in (0, 3, 6)]
    assert [p["total"] for p in pages] == [7, 7, 7]
    seen = [c["created_at"] for p in pages for c in p["items"]]
    assert len(seen) == 7 and len(set(seen)) == 7
    assert seen == sorted(seen, reverse=True)
    assert service.get("/api/v1/checkpoints", params={"limit": 0}).status_code == 422
    assert service.get("/api/v1/checkpoints", params={"limit": 501}).status_code == 422
    audit = service.get("/api/v1/audit", params={"limit": 1}).json()
    assert len(audit["items"]) == 1 and audit["total"] >= 1


def test_errors_map_to_http(service: Service) -> None:
    missing = service.get("/api/v1/checkpoints/6f1c3f0e-4a49-4a0e-9b7e-1f7a3f0c2d11")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert service.get("/api/v1/checkpoints/not-a-uuid").status_code == 404
    assert service.get("/api/v1/jobs/6f1c3f0e-4a49-4a0e-9b7e-1f7a3f0c2d11").status_code == 404
    assert service.post("/api/v1/checkpoints", {"kind": "whenever"}).status_code == 422
    assert service.post("/api/v1/checkpoints", {"surprise": 1}).status_code == 422
    big = requests.post(
        service.url + "/api/v1/checkpoints",
        data=b"x" * (65 * 1024),
        headers={**service.headers(), "Content-Type": "application/json"},
        timeout=10,
    )
    assert big.status_code == 413


def test_health_and_metrics(service: Service) -> None:
    doc = service.get("/api/v1/health").json()
    assert doc["status"] == "healthy" and {c["name"] for c in doc["checks"]} >= {
        "database",
        "proxmox",
        "hub_vm",
    }
    metrics = service.get("/metrics").text
    assert "hub_health_status 0.0" in metrics
    assert 'hub_health_check_status{check="proxmox"} 0.0' in metrics


def test_graceful_shutdown_exits_zero(service: Service) -> None:
    code, err = service.stop(signal.SIGTERM)
    assert code == 0, err
    assert "stopping" in err


def test_jobs_survive_a_crash_and_restart(
    pve: Any, fakepve_cafile: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """kill -9 of the service while a checkpoint job runs: after restart the job says it was
    interrupted, reconcile completed the checkpoint, and the service works on."""
    env = make_env(pve, fakepve_cafile, tmp_path, postgres_url, HUB_REDIS_URL=redis_url)
    env.services().db.upgrade()
    svc = Service(env=env, port=free_port(), token=make_token(env, "tests"))
    svc.start(HUB_FAILPOINT="checkpoint.snapshot_started")
    job = svc.post("/api/v1/checkpoints", {"reason": "interrupted"}).json()
    assert svc.process is not None and svc.process.stderr is not None
    for line in svc.process.stderr:
        if "failpoint checkpoint.snapshot_started reached" in line:
            break
    assert svc.stop(signal.SIGKILL)[0] == -signal.SIGKILL
    svc.start()
    try:
        after = svc.get(f"/api/v1/jobs/{job['id']}").json()
        assert after["state"] == "failed" and after["error"].startswith("interrupted")
        rows = svc.get("/api/v1/checkpoints").json()["items"]
        assert [(r["reason"], r["status"]) for r in rows] == [("interrupted", "completed")]
        again = svc.wait_job(svc.post("/api/v1/checkpoints", {}).json()["id"])
        assert again["state"] == "succeeded"
    finally:
        svc.stop()


def test_schemathesis_finds_no_server_error(service: Service, tmp_path: Path) -> None:
    """Generated requests over the served OpenAPI schema, with a valid token: no 5xx anywhere.

    Positive and negative data, strings over all of Unicode with NUL bytes allowed (schemathesis's
    widest alphabet, spelled out so a default change cannot narrow it). Lone surrogates are the one
    thing schemathesis never puts on the wire; test_input.py sends those as JSON escapes."""
    result = subprocess.run(
        [
            str(Path(__import__("sys").executable).with_name("schemathesis")),
            "run",
            service.url + "/openapi.json",
            "-H",
            f"Authorization: Bearer {service.token}",
            "--checks",
            "not_a_server_error",
            "--mode",
            "all",
            "--generation-codec",
            "utf-8",
            "--generation-allow-x00",
            "true",
            "--max-examples",
            "25",
            "--seed",
            "1",
            "--request-timeout",
            "20",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,  # schemathesis keeps its example database in the working directory
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    summary = re.search(r"(\d+) generated, (\d+) passed", result.stdout)
    assert summary is not None, result.stdout[-2000:]
    assert int(summary.group(2)) >= 100  # it really exercised the API, not an empty schema
