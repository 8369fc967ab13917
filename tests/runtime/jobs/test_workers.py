"""The worker registry and the leader lease, in one process against the real databases.

Whose running job may be marked interrupted: a worker's on another host only once its heartbeat is
stale; one on this host as soon as its process is gone; a job that names no worker. And the leader
lease: one candidate leads, the other takes over when it stops or its lease lapses.
"""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from runtime.db import Worker
from runtime.jobs.store import INTERRUPTED, JobStore
from runtime.jobs.workers import WorkerRegistry, WorkerTiming
from runtime.leases import DbLease, Leadership
from tests.support.hubenv import HubEnv, make_env

TIMING = WorkerTiming(heartbeat=1.0, stale_after=10.0)


@pytest.fixture(params=["sqlite", "postgres"])
def env(request: pytest.FixtureRequest, pve: Any, fakepve_cafile: str, tmp_path: Any) -> HubEnv:
    url = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "postgres_url")
    hub = make_env(pve, fakepve_cafile, tmp_path, url)
    hub.services().db.upgrade()
    return hub


def _foreign_worker(env: HubEnv, *, heartbeat_age: float, token: str | None = None) -> str:
    """A worker row as a process on another host (or a given token) wrote it."""
    worker_id = str(uuid.uuid4())
    now = datetime.now(UTC)
    with env.services().db.session() as s:
        s.add(
            Worker(
                id=worker_id,
                host="elsewhere",
                pid=4242,
                token=token or f"elsewhere:4242:123:{int(time.time())}:{uuid.uuid4().hex}",
                role="worker",
                started_at=now - timedelta(minutes=5),
                heartbeat_at=now - timedelta(seconds=heartbeat_age),
            )
        )
    return worker_id


def _running_job(env: HubEnv, worker_id: str | None) -> str:
    store = JobStore(env.services().db)
    job = store.create(kind="reconcile", params={}, actor="test")
    assert store.claim(job["id"], worker_id=worker_id) is not None
    return str(job["id"])


def _sweep(env: HubEnv) -> list[str]:
    db = env.services().db
    registry = WorkerRegistry(db, role="serve", timing=TIMING)
    return JobStore(db).fail_interrupted(alive=registry.live_ids)


def test_a_live_workers_job_is_kept_and_a_stale_ones_is_interrupted(env: HubEnv) -> None:
    worker = _foreign_worker(env, heartbeat_age=1)
    job = _running_job(env, worker)
    assert _sweep(env) == []
    assert JobStore(env.services().db).get(job)["state"] == "running"
    with env.services().db.session() as s:  # it stops heartbeating for longer than the stale interval
        s.execute(
            update(Worker)
            .where(Worker.id == worker)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=TIMING.stale_after + 1))
        )
    assert _sweep(env) == [job]
    settled = JobStore(env.services().db).get(job)
    assert (settled["state"], settled["error"]) == ("failed", INTERRUPTED)
    # Its row goes once nothing of it is left to settle; a live worker's row stays.
    live = _foreign_worker(env, heartbeat_age=0)
    registry = WorkerRegistry(env.services().db, role="serve", timing=TIMING)
    assert registry.remove_dead() == [worker]
    assert [w["id"] for w in registry.list()] == [live]


def test_a_job_of_a_gone_process_on_this_host_or_of_no_worker_is_interrupted_at_once(env: HubEnv) -> None:
    import socket

    # pid 1's start time is never "0", so this names a process of this host that does not exist.
    dead = _foreign_worker(env, heartbeat_age=0, token=f"{socket.gethostname()}:999999999:0:0:x")
    orphan = _running_job(env, dead)
    legacy = _running_job(env, None)  # claimed before the registry existed
    assert sorted(_sweep(env)) == sorted([orphan, legacy])


def test_a_registered_worker_heartbeats_and_comes_back_after_being_taken_for_dead(env: HubEnv) -> None:
    db = env.services().db
    registry = WorkerRegistry(db, role="worker", timing=WorkerTiming(heartbeat=0.2, stale_after=1.0))
    registry.start()
    try:
        job = _running_job(env, registry.id)
        with db.session() as s:
            first = s.get_one(Worker, registry.id).heartbeat_at
        _until(lambda: _heartbeat(env, registry.id) > first, what="a heartbeat")
        assert _sweep(env) == []
        with db.session() as s:  # a sweep elsewhere removed it (say, after a long database outage)
            s.delete(s.get_one(Worker, registry.id))
        _until(lambda: _heartbeat(env, registry.id) is not None, what="the row written again")
        assert JobStore(db).get(job)["state"] == "running"
    finally:
        registry.stop()
    with db.session() as s:
        assert s.scalars(select(Worker.id)).all() == []


def _heartbeat(env: HubEnv, worker_id: str) -> Any:
    with env.services().db.session() as s:
        row = s.get(Worker, worker_id)
        return row.heartbeat_at if row is not None else None


def _until(check: Any, *, timeout: float = 30, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_exactly_one_candidate_leads_and_the_other_takes_over(env: HubEnv) -> None:
    db = env.services().db
    events: list[tuple[str, str]] = []
    lock = threading.Lock()

    def candidate(name: str, *, ttl: float) -> Leadership:
        def note(what: str) -> Any:
            def record() -> None:
                with lock:
                    events.append((name, what))

            return record

        # Holders that look like processes on another host: only release or the TTL frees the lease.
        lease = DbLease(db, "leader", ttl=ttl, holder=f"elsewhere:{name}:1:0:{uuid.uuid4().hex}")
        return Leadership(lease, on_gain=note("gain"), on_loss=note("loss"))

    first, second = candidate("first", ttl=30), candidate("second", ttl=30)
    first.start()
    second.start()
    try:
        assert (first.leading, second.leading) == (True, False)
        second._tick()  # pyright: ignore[reportPrivateUsage]  # another try: still held
        assert (first.leading, second.leading) == (True, False)
        first.stop()  # hands the lease back: the second takes it at its next try
        _until(lambda: second.leading, what="the second to take over")
    finally:
        second.stop()
    with lock:
        assert events == [("first", "gain"), ("first", "loss"), ("second", "gain"), ("second", "loss")]


def test_a_lease_whose_holder_stopped_renewing_lapses_to_the_next_candidate(env: HubEnv) -> None:
    db = env.services().db
    frozen = DbLease(db, "leader", ttl=1.0, holder=f"elsewhere:9:1:0:{uuid.uuid4().hex}")
    frozen.acquire()  # and never renewed: a holder on another host that froze or lost its network
    gained = threading.Event()
    heir = Leadership(
        DbLease(db, "leader", ttl=1.0, holder=f"elsewhere:10:1:0:{uuid.uuid4().hex}"),
        on_gain=gained.set,
        on_loss=lambda: None,
    )
    heir.start()
    try:
        assert gained.wait(30), "the lease never lapsed to the next candidate"
        assert not frozen.renew()  # the old holder learns it lost it at its next renewal
        assert heir.lease.holder_now() == heir.lease.holder
    finally:
        heir.stop()
