"""The service's logs and metrics, through the real ``hubctl serve`` over fakepve.

Its stderr is a pipe here, not a terminal: every line must be a JSON object.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import threading
import time
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hubcore.proxmox.errors import ProxmoxError
from runtime import logs
from runtime.checkpoints.records import CheckpointKind
from runtime.checkpoints.service import CheckpointService
from runtime.errors import LockBusyError
from runtime.locks import FileLocks, ObservedLocks
from tests.support.hubenv import TOKEN_SECRET, HubEnv, fake_pve_client, make_env
from tests.support.service import Service, serve


@pytest.fixture
def service(pve: Any, fakepve_cafile: str, tmp_path: Path) -> Iterator[Service]:
    yield from serve(make_env(pve, fakepve_cafile, tmp_path, f"sqlite:///{tmp_path / 'hub.db'}"))


def _samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def test_a_checkpoint_through_serve_is_logged_as_json_and_counted(service: Service, pve: Any) -> None:
    job = service.wait_job(service.post("/api/v1/checkpoints", {"kind": "manual"}).json()["id"])
    assert job["state"] == "succeeded", job
    metrics = service.get("/metrics")
    assert metrics.status_code == 200
    samples = _samples(metrics.text)
    assert (
        samples[("hub_jobs_total", frozenset({("kind", "checkpoint.create"), ("outcome", "succeeded")}))] == 1
    )
    assert samples[("hub_job_duration_seconds_count", frozenset({("kind", "checkpoint.create")}))] == 1
    assert (
        samples[
            (
                "hub_checkpoint_duration_seconds_count",
                frozenset({("kind", "manual"), ("status", "completed")}),
            )
        ]
        == 1
    )
    requests = {k: v for k, v in samples.items() if k[0] == "hub_proxmox_requests_total"}
    assert sum(requests.values()) > 0
    assert any(dict(labels)["kind"] == "create_snapshot" for _, labels in requests)
    assert samples[("hub_lock_wait_seconds_count", frozenset())] >= 1
    assert ("hub_retention_deletions_total", frozenset()) in samples

    code, err = service.stop()
    assert code == 0
    lines = [json.loads(line) for line in err.splitlines() if line.strip()]  # every line is JSON
    assert all({"ts", "level", "logger", "msg"} <= line.keys() for line in lines)
    access = [line for line in lines if line["logger"] == "hub.access"]
    post = [a for a in access if a["method"] == "POST" and a["path"] == "/api/v1/checkpoints"]
    assert post and post[0]["status"] == 202 and post[0]["actor"] == "api:tests"
    assert post[0]["duration_ms"] >= 0
    assert any(a["path"] == "/metrics" and a["status"] == 200 for a in access)
    mine = [line for line in lines if line.get("job_id") == job["id"]]
    assert [m["msg"].split()[-1] for m in mine] == ["started", "succeeded"]
    assert mine[-1]["duration_s"] >= 0 and mine[-1]["kind"] == "checkpoint.create"
    assert service.token not in err and TOKEN_SECRET not in err and "Bearer" not in err


def test_a_failed_job_logs_its_error(service: Service, pve: Any) -> None:
    pve.fail("POST", "/nodes/pve1/qemu/100/snapshot", error="snapshot_feature_not_available")
    job = service.wait_job(service.post("/api/v1/checkpoints", {}).json()["id"])
    assert job["state"] == "failed"
    samples = _samples(service.get("/metrics").text)
    assert samples[("hub_jobs_total", frozenset({("kind", "checkpoint.create"), ("outcome", "failed")}))] == 1
    _, err = service.stop()
    failed = [json.loads(line) for line in err.splitlines() if job["id"] in line and '"warning"' in line]
    assert failed and "snapshot feature is not available" in failed[0]["msg"]


def test_unauthenticated_requests_are_logged_without_actor_or_header(service: Service) -> None:
    assert service.get("/api/v1/health", headers={"Authorization": "Bearer not-a-token"}).status_code == 401
    _, err = service.stop()
    refused = [
        line
        for line in map(json.loads, err.splitlines())
        if line["logger"] == "hub.access" and line["path"] == "/api/v1/health"
    ]
    assert refused and refused[0]["status"] == 401 and "actor" not in refused[0]
    assert "not-a-token" not in err


def test_text_on_a_terminal_and_levels() -> None:
    out = io.StringIO()
    assert logs.configure("warning", stream=out, as_json=False) is False
    try:
        logging.getLogger("hub.test").info("not shown")
        logging.getLogger("hub.test").warning("shown with secret=%s", "PVEAPIToken=u@pve!t=0123456789abcdef")
    finally:
        logs.shutdown()
    text = out.getvalue()
    assert "not shown" not in text
    assert "warning hub.test: shown" in text and "0123456789abcdef" not in text


class _Recorder:
    def __init__(self) -> None:
        self.requests: list[tuple[str, str | None]] = []
        self.retries: list[tuple[str, int, str]] = []
        self.acquired: list[str] = []
        self.refused: list[tuple[str, str]] = []

    def on_request(self, kind: str, *, seconds: float, error: str | None) -> None:
        self.requests.append((kind, error))

    def on_retry(self, kind: str, *, attempt: int, delay: float, error: ProxmoxError) -> None:
        self.retries.append((kind, attempt, type(error).__name__))

    def on_acquired(self, name: str, *, waited: float) -> None:
        self.acquired.append(name)

    def on_refused(self, name: str, *, waited: float, reason: str) -> None:
        self.refused.append((name, reason))


def test_proxmox_client_tells_its_observer_of_requests_and_retries(pve: Any, fakepve_cafile: str) -> None:
    seen = _Recorder()
    client = fake_pve_client(
        pve, fakepve_cafile, transient_retry_seconds=5, sleep=lambda _s: None, observer=seen
    )
    client.version()
    assert seen.requests == [("version", None)]
    pve.fail("GET", "/nodes/pve1/qemu/100/snapshot", status=500, message="boom", times=1)
    client.list_snapshots("pve1", 100)
    assert seen.retries == [("list_snapshots", 1, "ProxmoxServerError")]
    assert seen.requests[1:] == [("list_snapshots", "ProxmoxServerError"), ("list_snapshots", None)]


def test_lock_waits_and_refusals_are_observed(tmp_path: Path) -> None:
    seen = _Recorder()
    locks = ObservedLocks(FileLocks(tmp_path), seen)
    with locks.hold("vm-100", wait=1), pytest.raises(LockBusyError), locks.hold("vm-100", wait=0.1):
        pass
    assert seen.acquired == ["vm-100"] and seen.refused == [("vm-100", "busy")]


@contextlib.contextmanager
def _serving(env: HubEnv) -> Generator[Service]:
    yield from serve(env)


def test_every_retention_deletion_is_counted_whichever_path_pruned(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    """The prune inside a create job, a prune outside the service, never an operator's delete."""
    env = make_env(
        pve,
        fakepve_cafile,
        tmp_path,
        f"sqlite:///{tmp_path / 'hub.db'}",
        HUB_RETENTION='{"manual": {"keep_last": 1}}',
    )

    def deletions(svc: Service) -> float:
        return _samples(svc.get("/metrics").text)[("hub_retention_deletions_total", frozenset())]

    with _serving(env) as svc:
        assert deletions(svc) == 0
        first, second = (
            svc.wait_job(svc.post("/api/v1/checkpoints", {"kind": "manual"}).json()["id"]) for _ in range(2)
        )
        assert first["state"] == second["state"] == "succeeded"
        # The second create job pruned the first; its result is the new checkpoint, not a prune list.
        assert "pruned" not in second["result"]
        assert svc.get(f"/api/v1/checkpoints/{first['result']['uuid']}").json()["status"] == "deleted"
        assert deletions(svc) == 1

        # A checkpoint taken beside the service (an operator's `hubctl checkpoint create`) prunes too.
        services = env.services()
        try:
            CheckpointService.build(services, actor="hubctl").create(kind=CheckpointKind.MANUAL)
        finally:
            services.close()
        assert deletions(svc) == 2

        # An operator's delete is not retention.
        newest = svc.get("/api/v1/checkpoints", params={"status": "completed"}).json()["items"][0]
        gone = svc.wait_job(svc.delete(f"/api/v1/checkpoints/{newest['uuid']}").json()["id"])
        assert gone["state"] == "succeeded"
        assert deletions(svc) == 2


class _HeldStream(io.StringIO):
    """A stderr whose reader is away until ``release`` (writes block meanwhile)."""

    def __init__(self) -> None:
        super().__init__()
        self.away = threading.Event()

    def write(self, s: str) -> int:
        self.away.wait()
        return super().write(s)

    def release(self) -> None:
        self.away.set()


def test_ending_with_a_full_queue_writes_what_is_queued() -> None:
    """A burst fills the bounded queue while stderr is slow; ending the process then must wait for the
    writer and write every queued line (the standard listener raised queue.Full here)."""
    out = _HeldStream()
    logs.configure("info", stream=out, as_json=True)
    log = logging.getLogger("hub.test")
    for i in range(logs.QUEUE_SIZE + 50):
        log.info("line %d", i)
    threading.Timer(0.3, out.release).start()
    logs.shutdown()  # no exception
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(lines) >= logs.QUEUE_SIZE  # every line that found room in the queue
    assert lines[-1]["msg"].startswith("line ")


def test_ending_with_stderr_stuck_gives_up_in_bounded_time(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(logs, "SHUTDOWN_WRITE_SECONDS", 0.2)
    out = _HeldStream()
    logs.configure("info", stream=out, as_json=True)
    try:
        for i in range(logs.QUEUE_SIZE + 50):
            logging.getLogger("hub.test").info("line %d", i)
        started = time.monotonic()
        logs.shutdown()
        assert time.monotonic() - started < 5  # gave up instead of waiting for a reader that never comes
    finally:
        out.release()
