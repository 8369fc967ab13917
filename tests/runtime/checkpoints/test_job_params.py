"""Job parameters name the VM ``vm_id``, as the API and every result do; ``vmid`` is still read, so a
job queued before the rename (its parameters stored with ``vmid``) runs after an upgrade."""

from __future__ import annotations

from typing import Any

import pytest

from runtime import domains
from runtime.errors import UsageError
from runtime.jobs.queue import JobQueue
from runtime.jobs.registry import JobContext
from runtime.jobs.store import JobStore
from tests.support.hubenv import HUB_VMID, HubEnv, hub_snapshots


@pytest.mark.parametrize("kind", ["checkpoint.create", "checkpoint.prune", "reconcile"])
def test_new_jobs_store_vm_id_whichever_name_was_sent(sqlite_hubenv: HubEnv, kind: str) -> None:
    queue = JobQueue(sqlite_hubenv.services(), kinds=domains.job_kinds())
    for name in ("vm_id", "vmid"):
        job = queue.submit(kind, {name: HUB_VMID}, actor="test")
        stored = JobStore(sqlite_hubenv.services().ready_db()).get(job["id"])
        assert stored["params"].get("vm_id") == HUB_VMID and "vmid" not in stored["params"]


def test_both_names_for_different_vms_are_refused(sqlite_hubenv: HubEnv) -> None:
    queue = JobQueue(sqlite_hubenv.services(), kinds=domains.job_kinds())
    with pytest.raises(UsageError, match="vmid"):
        queue.submit("checkpoint.create", {"vm_id": HUB_VMID, "vmid": 4242}, actor="test")


def test_a_job_stored_with_the_old_name_still_runs(sqlite_hubenv: HubEnv, pve: Any) -> None:
    services = sqlite_hubenv.services()
    kinds = domains.job_kinds()
    old = {"kind": "manual", "reason": "queued before the rename", "vmid": HUB_VMID}
    result = kinds.get("checkpoint.create").run(JobContext(services=services, actor="test"), old)
    assert result["vm_id"] == HUB_VMID and result["status"] == "completed"
    assert result["snapname"] in hub_snapshots(pve)
    report = kinds.get("reconcile").run(JobContext(services=services, actor="test"), {"vmid": HUB_VMID})
    assert report["vm_id"] == HUB_VMID
