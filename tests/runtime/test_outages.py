"""Outages of the runtime's own servers in the middle of an operation, through the real processes:
PostgreSQL restarted during a checkpoint job, Redis restarted (with its append-only file) while a
checkpoint holds the VM lock."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.runtime.checkpoints.test_under_faults import slow_snapshots
from tests.support.hubenv import make_env
from tests.support.servers import private_postgres, private_redis
from tests.support.service import Service, free_port, make_token


@pytest.mark.fakepve(time_scale=1.0)
def test_postgres_restarted_during_a_checkpoint_job(pve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    """The outcome write meets a stopped PostgreSQL: it is retried until the server is back, the job
    ends succeeded and its checkpoint completed, and the log holds no traceback."""
    slow_snapshots(pve, 5)
    with private_postgres() as pg:
        env = make_env(pve, fakepve_cafile, tmp_path, pg.url)
        env.services().db.upgrade()
        svc = Service(env=env, port=free_port(), token=make_token(env, "tests"))
        svc.start()
        try:
            job = svc.post("/api/v1/checkpoints", {"reason": "through an outage"}).json()
            deadline = time.monotonic() + 30
            while not any(t["type"] == "qmsnapshot" for t in pve.tasks.values()):
                assert time.monotonic() < deadline
                time.sleep(0.05)
            pg.stop()  # down while the snapshot task runs, and when its outcome is written
            time.sleep(8)
            pg.start()
            done = _wait_job(svc, job["id"])
            assert done["state"] == "succeeded", done
            assert done["result"]["status"] == "completed"
        finally:
            _, err = svc.stop()
        assert "Traceback" not in err


def _wait_job(svc: Service, job_id: str, timeout: float = 90) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            answer = svc.get(f"/api/v1/jobs/{job_id}")
            if answer.status_code == 200 and answer.json()["state"] in ("succeeded", "failed"):
                return answer.json()
        except requests.RequestException:
            pass
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} did not reach a final state")


@pytest.mark.fakepve(time_scale=1.0)
def test_redis_restarted_while_a_checkpoint_holds_the_vm_lock(
    pve: Any, fakepve_cafile: str, tmp_path: Path, sqlite_url: str
) -> None:
    """The release meets a Redis that is down; the key would come back from the append-only file.
    The release is retried until Redis answers, so the next checkpoint is not refused."""
    slow_snapshots(pve, 4)
    with private_redis(tmp_path / "redis") as rd:
        env = make_env(pve, fakepve_cafile, tmp_path, sqlite_url, HUB_REDIS_URL=rd.url)
        env.services().db.upgrade()
        first = env.spawn("checkpoint", "create", "--json")
        deadline = time.monotonic() + 30
        while not any(t["type"] == "qmsnapshot" for t in pve.tasks.values()):
            assert time.monotonic() < deadline
            time.sleep(0.05)
        rd.stop()  # the lock key is in the append-only file

        def restart_later() -> None:
            time.sleep(6)  # after the snapshot finished: the release finds Redis down
            rd.start()

        restarter = threading.Thread(target=restart_later)
        restarter.start()
        out, err = first.communicate(timeout=120)
        restarter.join()
        assert first.returncode == 0, err
        assert json.loads(out)["status"] == "completed"
        second = env.run("checkpoint", "create", "--json", HUB_LOCK_WAIT_SECONDS="0")
        assert second.returncode == 0, second.stderr  # the lock is free at once, not in minutes
        health = json.loads(env.run("health", "--json").stdout)
        redis_check = next(c for c in health["checks"] if c["name"] == "redis")
        assert redis_check["status"] == "healthy", redis_check


def test_every_pooled_connection_busy_is_a_database_error_not_a_crash(sqlite_url: str) -> None:
    """A pool with no connection free for its timeout (SQLAlchemy's TimeoutError, not an
    OperationalError) is the database unable to serve now: a DatabaseError (503 at the API, retried
    by outcome writes), through a session and through the list's Core read alike."""
    from sqlalchemy import text
    from sqlalchemy.pool import QueuePool

    from runtime.checkpoints.queries import CheckpointQueries
    from runtime.db import Database
    from runtime.errors import DatabaseError

    db = Database(sqlite_url)
    db.upgrade()
    # One connection, given up on after 0.1 s (the default pool waits 30 s for one of 15).
    db.engine.pool = QueuePool(db.engine.pool._creator, pool_size=1, max_overflow=0, timeout=0.1)  # pyright: ignore[reportPrivateUsage]
    with db.engine.connect() as held:
        held.execute(text("SELECT 1"))
        with pytest.raises(DatabaseError, match="QueuePool limit"), db.session() as s:
            s.execute(text("SELECT 1"))
        with pytest.raises(DatabaseError, match="QueuePool limit"):
            CheckpointQueries(db).page_public(limit=50, offset=0)
    with db.session() as s:  # freed: served again
        assert s.execute(text("SELECT 1")).scalar() == 1
