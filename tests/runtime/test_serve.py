"""`hubctl serve` as a real process on a bad day: a second one on the same database, a busy port,
a worker killed mid-checkpoint, a job whose worker is gone, a token pasted from a CRLF file."""

from __future__ import annotations

import socket
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import select

from runtime.db import AuditEntry, Job
from tests.runtime.checkpoints.test_crash_safety import kill_at
from tests.support.hubenv import TOKEN_ID, TOKEN_SECRET, HubEnv, make_env, one_line_error
from tests.support.service import Service, free_port, make_token


def _service(env: HubEnv, **extra: str) -> Service:
    svc = Service(env=env, port=free_port(), token=make_token(env, f"t{uuid.uuid4().hex[:6]}"))
    svc.start(**extra)
    return svc


def _until(check: Any, *, timeout: float = 30, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_second_serve_on_the_same_database_follows_and_leaves_the_first_alone(
    pve: Any, fakepve_cafile: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> None:
    """Two serves on one PostgreSQL + Redis (scale-out): the second one serves and works, but the
    first one leads (the scheduler and loops stay on it), and neither touches the other's jobs."""
    env = make_env(
        pve, fakepve_cafile, tmp_path, postgres_url, HUB_REDIS_URL=redis_url, HUB_API_PROCESSES="1"
    )
    env.services().db.upgrade()
    first = _service(env)
    second = _service(env)
    try:
        for svc in (first, second):
            job = svc.wait_job(svc.post("/api/v1/checkpoints", {}).json()["id"])
            assert job["state"] == "succeeded"  # neither one's jobs were taken for interrupted
    finally:
        _, second_err = second.stop()
        _, first_err = first.stop()
    assert "leading: scheduler" in first_err
    assert "leading: scheduler" not in second_err and "another process leads" in second_err


def test_serve_on_a_busy_port_or_a_bad_host_is_one_line(sqlite_hubenv: HubEnv) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = sqlite_hubenv.run("serve", "--port", str(port), timeout=60)
    assert result.returncode == 1
    assert "cannot listen on 127.0.0.1" in one_line_error(result.stderr)
    bad = sqlite_hubenv.run("serve", "--host", "no-such-host.invalid", "--port", "8080", timeout=60)
    assert bad.returncode == 1
    assert "cannot listen on no-such-host.invalid" in one_line_error(bad.stderr)


def test_the_service_settles_a_killed_workers_checkpoint_without_a_restart(
    sqlite_hubenv: HubEnv, pve: Any
) -> None:
    svc = _service(sqlite_hubenv, HUB_RECONCILE_INTERVAL_SECONDS="1")
    try:
        kill_at(sqlite_hubenv, "checkpoint.snapshot_done", "checkpoint", "create")
        # Not read back at once: the service's 1 s loop may already have settled it on a busy machine.
        (row,) = _until(
            lambda: (
                (rows := svc.get("/api/v1/checkpoints").json()["items"])[0]["status"] == "completed" and rows
            ),
            what="the periodic reconcile to complete the checkpoint",
        )
    finally:
        svc.stop()
    # It was the service that completed it, from 'creating' (the killed process left it there).
    with sqlite_hubenv.services().db.session() as s:
        moves = [
            (e.actor, e.details["from"], e.details["to"])
            for e in s.scalars(
                select(AuditEntry).where(
                    AuditEntry.target == row["uuid"], AuditEntry.action == "reconcile.status"
                )
            )
        ]
    assert moves == [("service", "creating", "completed")]


def test_a_running_job_whose_worker_is_gone_is_settled_and_audited(sqlite_hubenv: HubEnv) -> None:
    svc = _service(sqlite_hubenv, HUB_RECONCILE_INTERVAL_SECONDS="1")
    orphan = str(uuid.uuid4())
    try:
        with sqlite_hubenv.services().db.session() as s:  # as a worker that died mid-job left it
            s.add(
                Job(
                    id=orphan,
                    kind="checkpoint.create",
                    params={},
                    state="running",
                    actor="api:tests",
                    progress=[],
                    created_at=datetime.now(UTC),
                    started_at=datetime.now(UTC),
                )
            )
        job = _until(
            lambda: (j := svc.get(f"/api/v1/jobs/{orphan}").json())["state"] == "failed" and j,
            what="the sweep to settle the orphaned job",
        )
        assert job["error"].startswith("interrupted") and "left to reconcile" in job["error"]
        with sqlite_hubenv.services().db.session() as s:
            entries = list(s.scalars(select(AuditEntry).where(AuditEntry.target == orphan)))
        assert [(e.action, e.outcome) for e in entries] == [("job.checkpoint.create", "failed")]
    finally:
        svc.stop()


def test_a_token_with_a_control_character_is_refused_without_printing_it(sqlite_hubenv: HubEnv) -> None:
    secret = TOKEN_SECRET
    for command in (["checkpoint", "list"], ["serve", "--port", str(free_port())]):
        result = sqlite_hubenv.run(*command, HUB_PROXMOX_API_TOKEN=f"{TOKEN_ID}={secret}\r", timeout=60)
        assert result.returncode == 2
        assert "HUB_PROXMOX_API_TOKEN" in one_line_error(result.stderr)
        assert secret not in result.stderr + result.stdout


def test_a_queued_job_whose_message_was_lost_is_sent_again(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """Queued long ago with no message (Redis lost it): the service sends it again and it runs."""
    from datetime import timedelta

    svc = _service(sqlite_hubenv, HUB_RECONCILE_INTERVAL_SECONDS="1")
    lost = str(uuid.uuid4())
    try:
        with sqlite_hubenv.services().db.session() as s:
            s.add(
                Job(
                    id=lost,
                    kind="reconcile",
                    params={},
                    state="queued",
                    actor="api:tests",
                    progress=[],
                    created_at=datetime.now(UTC) - timedelta(minutes=5),
                )
            )
        job = _until(
            lambda: (j := svc.get(f"/api/v1/jobs/{lost}").json())["state"] == "succeeded" and j,
            what="the lost job to be sent again and run",
        )
        assert job["result"]["vm_id"] == 100
    finally:
        svc.stop()
