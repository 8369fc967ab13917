"""A route that asks Proxmox before it answers says so in its schema: 502 when Proxmox fails.

``POST /checkpoints`` and ``POST /checkpoints/prune`` look the named VM up on the cluster (an unknown
VM is 404 now, not a failed job later); a VM missing from the cached listing means one request to
Proxmox. With Proxmox unreachable that is 502 ``proxmox_error`` and nothing queued: the right answer
for a failing upstream, and now the documented one (protect/unprotect already documented theirs)."""

from __future__ import annotations

from typing import Any

from tests.support.service import Service

UNKNOWN_VM = 4242  # not in the fake cluster: the lookup cannot be answered from the cache


def test_a_vm_lookup_with_proxmox_unreachable_is_a_documented_502_and_queues_nothing(
    pg_service: Service, pve: Any
) -> None:
    svc = pg_service
    schema = svc.get("/openapi.json").json()
    jobs_before = svc.get("/api/v1/jobs").json()["total"]
    pve.flaky_network(drop_rate=1.0)  # every connection reset: Proxmox unreachable
    try:
        for path in ("/api/v1/checkpoints", "/api/v1/checkpoints/prune"):
            answer = svc.post(path, {"vm_id": UNKNOWN_VM})
            assert answer.status_code == 502, (path, answer.text)
            assert answer.json()["error"] == "proxmox_error"
            assert "unreachable" in answer.json()["detail"]
            assert "502" in schema["paths"][path]["post"]["responses"], path
    finally:
        pve.flaky_network(drop_rate=0.0)
    assert svc.get("/api/v1/jobs").json()["total"] == jobs_before
    # Proxmox back: the same lookup is the client's 404, not a stale failure.
    missing = svc.post("/api/v1/checkpoints", {"vm_id": UNKNOWN_VM})
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
