"""The checkpoint endpoints issue 13 asked for, through the real ``hubctl serve``: protect/unprotect,
the synchronous prune preview, ``kind`` and ``vm_id`` checked before any job exists, ``vm_id`` as the
one name (``vmid`` still accepted)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from runtime.db import Checkpoint
from runtime.db.models import new_uuid
from tests.support.hubenv import HUB_VMID, hub_snapshots, make_env
from tests.support.service import Service, serve


def jobs_total(svc: Service) -> int:
    return int(svc.get("/api/v1/jobs").json()["total"])


def test_protect_and_unprotect_are_synchronous(pg_service: Service, pve: Any) -> None:
    svc = pg_service
    job = svc.wait_job(svc.post("/api/v1/checkpoints", {"reason": "before upgrade"}).json()["id"])
    cp = job["result"]
    protected = svc.post(f"/api/v1/checkpoints/{cp['uuid']}/protect")
    assert protected.status_code == 200, protected.text
    assert protected.json()["protected"] is True
    assert "hub-protected: yes" in hub_snapshots(pve)[cp["snapname"]]["description"]
    assert svc.get(f"/api/v1/checkpoints/{cp['uuid']}").json()["protected"] is True
    assert svc.post(f"/api/v1/checkpoints/{cp['uuid']}/protect").json()["protected"] is True  # idempotent
    actions = {a["action"] for a in svc.get("/api/v1/audit", params={"target": cp["uuid"]}).json()["items"]}
    assert "checkpoint.protect" in actions
    # Protected means retention leaves it alone, and the preview says so.
    kept = {c["uuid"]: c["rule"] for c in svc.get("/api/v1/checkpoints/prune-preview").json()["keep"]}
    assert kept[cp["uuid"]] == "protected"

    lifted = svc.post(f"/api/v1/checkpoints/{cp['uuid']}/unprotect")
    assert lifted.status_code == 200 and lifted.json()["protected"] is False
    assert "hub-protected" not in hub_snapshots(pve)[cp["snapname"]]["description"]

    missing = svc.post("/api/v1/checkpoints/6f1c3f0e-4a49-4a0e-9b7e-1f7a3f0c2d11/protect")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    assert svc.post("/api/v1/checkpoints/not-a-uuid/unprotect").status_code == 404


def test_only_a_completed_checkpoint_can_be_protected(pg_service: Service) -> None:
    uuid = _rows(pg_service, [datetime(2026, 1, 1, tzinfo=UTC)], status="failed")[0]
    refused = pg_service.post(f"/api/v1/checkpoints/{uuid}/protect")
    assert refused.status_code == 422 and "only completed" in refused.json()["detail"]


@pytest.fixture
def keep_two_daily(pve: Any, fakepve_cafile: str, tmp_path: Path, postgres_url: str) -> Iterator[Service]:
    env = make_env(
        pve,
        fakepve_cafile,
        tmp_path,
        postgres_url,
        HUB_KEEP_LAST="1",
        HUB_KEEP_DAILY="2",
        HUB_KEEP_WEEKLY="0",
        HUB_KEEP_MONTHLY="0",
    )
    yield from serve(env)


def test_prune_preview_says_what_goes_and_what_stays_by_which_rule(keep_two_daily: Service) -> None:
    svc = keep_two_daily
    base = datetime(2026, 3, 10, 12, tzinfo=UTC)
    # Newest first: today 12:00 and 06:00, yesterday, two days ago, three days ago.
    at = [
        base,
        base - timedelta(hours=6),
        base - timedelta(days=1),
        base - timedelta(days=2),
        base - timedelta(days=3),
    ]
    ids = _rows(svc, at)
    _rows(svc, [base], vm_id=4242)  # another VM's: not in this VM's preview

    preview = svc.get("/api/v1/checkpoints/prune-preview")
    assert preview.status_code == 200, preview.text
    doc = preview.json()
    assert doc["vm_id"] == HUB_VMID and doc["policy"]["keep_last"] == 1 and doc["policy"]["keep_daily"] == 2
    keep = {c["uuid"]: c["rule"] for c in doc["keep"]}
    prune = {c["uuid"]: c["rule"] for c in doc["prune"]}
    assert keep == {ids[0]: "keep-last", ids[2]: "keep-daily", ids[3]: "keep-daily"}
    assert prune == {ids[1]: "pruned", ids[4]: "pruned"}
    assert all(c["keep"] is False for c in doc["prune"]) and all(c["keep"] for c in doc["keep"])
    # Nothing changed, and no job was queued.
    assert (
        svc.get("/api/v1/checkpoints", params={"status": "completed", "vm_id": HUB_VMID}).json()["total"] == 5
    )
    assert jobs_total(svc) == 0
    other = svc.get("/api/v1/checkpoints/prune-preview", params={"vmid": 4242}).json()
    assert other["vm_id"] == 4242 and other["prune"] == [] and len(other["keep"]) == 1


def test_kind_and_vm_are_checked_before_any_job(pg_service: Service, pve: Any) -> None:
    svc = pg_service
    for kind in ("scheduled", "imported"):
        refused = svc.post("/api/v1/checkpoints", {"kind": kind})
        assert refused.status_code == 422 and "kind" in refused.json()["detail"], refused.text
    unknown = svc.post("/api/v1/checkpoints", {"vm_id": 4242})
    assert unknown.status_code == 404 and "4242" in unknown.json()["detail"], unknown.text
    assert svc.post("/api/v1/checkpoints", {"vmid": 4242}).status_code == 404
    assert svc.post("/api/v1/checkpoints", {"vm_id": 100, "vmid": 101}).status_code == 422
    assert jobs_total(svc) == 0
    assert pve.vm(HUB_VMID).snapshots.keys() <= {"current"}

    for body in ({"vm_id": HUB_VMID, "kind": "pre-operation"}, {"vmid": HUB_VMID, "kind": "emergency"}):
        job = svc.post("/api/v1/checkpoints", body)
        assert job.status_code == 202, job.text
        done = svc.wait_job(job.json()["id"])
        assert done["state"] == "succeeded" and done["result"]["vm_id"] == HUB_VMID
        assert done["result"]["kind"] == body["kind"]


def test_vm_id_is_the_name_in_queries_and_vmid_still_works(pg_service: Service) -> None:
    svc = pg_service
    _rows(svc, [datetime(2026, 1, 1, tzinfo=UTC)])
    _rows(svc, [datetime(2026, 1, 2, tzinfo=UTC)], vm_id=4242)
    for name in ("vm_id", "vmid"):
        page = svc.get("/api/v1/checkpoints", params={name: 4242}).json()
        assert page["total"] == 1 and page["items"][0]["vm_id"] == 4242
    clash = svc.get("/api/v1/checkpoints", params={"vm_id": 100, "vmid": 4242})
    assert clash.status_code == 422 and clash.json()["error"] == "invalid"
    same = svc.get("/api/v1/checkpoints", params={"vm_id": 100, "vmid": 100})
    assert same.status_code == 200 and same.json()["total"] == 1
    before = jobs_total(svc)
    for name in ("vm_id", "vmid"):  # a VM the cluster does not list: 404, and no job
        unknown = svc.post("/api/v1/checkpoints/prune", {"dry_run": True, name: 4242})
        assert unknown.status_code == 404 and "4242" in unknown.json()["detail"], unknown.text
    assert jobs_total(svc) == before
    prune = svc.post("/api/v1/checkpoints/prune", {"dry_run": True, "vmid": HUB_VMID})
    assert prune.status_code == 202
    assert svc.wait_job(prune.json()["id"])["params"] == {"dry_run": True, "vm_id": HUB_VMID}
    assert svc.post("/api/v1/checkpoints/prune", {"dry_run": "yes"}).status_code == 422


def _rows(
    svc: Service, times: list[datetime], *, vm_id: int = HUB_VMID, status: str = "completed"
) -> list[str]:
    ids: list[str] = []
    with svc.env.services().db.session() as s:
        for at in times:
            uuid = new_uuid()
            ids.append(uuid)
            s.add(
                Checkpoint(
                    uuid=uuid,
                    vm_id=vm_id,
                    node="pve1",
                    snapname="hub-" + uuid.replace("-", ""),
                    kind="scheduled",  # the label HUB_KEEP_* applies to
                    status=status,
                    created_at=at,
                    protected=False,
                )
            )
    return ids
