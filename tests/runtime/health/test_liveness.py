"""Scheduler and job-worker liveness through heartbeats: a hung worker thread (a job running past its
kind's timeout) is noticed, a dead one too, and a silent scheduler. The clock of the heartbeats is
the test's, so "past its timeout" is a step of the test, not a wait."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from runtime.health.checks import liveness_checks
from runtime.heartbeats import Heartbeats
from runtime.jobs.queue import JobQueue
from runtime.jobs.registry import JobContext, JobKind, JobKinds
from tests.support.hubenv import HubEnv


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


class NoParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def wait_for(condition: Callable[[], bool], *, timeout: float = 20.0) -> None:
    """Wait for something the workers do; a bound on waiting, not an assertion on speed."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the condition did not come true"
        time.sleep(0.02)


def by_name(beats: Heartbeats, now: float) -> dict[str, Any]:
    return {c.name: c for c in liveness_checks(beats.snapshot(), now=now)}


def test_a_hung_worker_thread_is_noticed(sqlite_hubenv: HubEnv) -> None:
    services = sqlite_hubenv.services()
    clock = FakeClock()
    services.__dict__["heartbeats"] = Heartbeats(clock=clock)  # the test's clock, the real registry
    release = threading.Event()
    started = threading.Event()

    def block(_ctx: JobContext, _params: NoParams) -> dict[str, Any]:
        started.set()
        release.wait(30)
        return {}

    kinds = JobKinds([JobKind("test.block", NoParams, block, "blocks", timeout_seconds=60)])
    queue = JobQueue(services, kinds=kinds, worker_threads=2)
    queue.start_workers()
    try:
        beats = services.heartbeats
        wait_for(lambda: len([b for b in beats.snapshot() if b.role == "worker"]) == 2)
        assert by_name(beats, clock.now)["workers"].status == "healthy"

        queue.submit("test.block", {}, actor="test")
        assert started.wait(20)
        wait_for(lambda: any(b.busy_with for b in beats.snapshot()))
        # Within its kind's timeout a running job is a live thread.
        clock.now += 59
        workers = by_name(beats, clock.now)["workers"]
        assert workers.status == "healthy" and "1 busy" in workers.detail
        # Past it, the thread is hung: one of two, so degraded, and the detail names the job.
        clock.now += 2
        workers = by_name(beats, clock.now)["workers"]
        assert workers.status == "degraded", workers
        assert "hung: job" in workers.detail and "(test.block)" in workers.detail
        release.set()
        wait_for(lambda: not any(b.busy_with for b in beats.snapshot()))
        assert by_name(beats, clock.now)["workers"].status == "healthy"
    finally:
        release.set()
        queue.stop_workers(timeout_ms=10_000)
        services.close()
    # Stopped on purpose: the threads are forgotten, not reported dead.
    assert "workers" not in by_name(services.heartbeats, clock.now)


def test_every_worker_hung_or_dead_is_critical() -> None:
    clock = FakeClock()
    beats = Heartbeats(clock=clock)
    done = threading.Thread(target=lambda: None)
    done.start()
    done.join()
    beats.watch_thread("worker:a", done, role="worker")
    alive = threading.Event()
    other = threading.Thread(target=alive.wait, args=(30,))
    other.start()
    try:
        beats.watch_thread("worker:b", other, role="worker")
        workers = by_name(beats, clock.now)["workers"]
        assert workers.status == "degraded" and "worker:a died" in workers.detail
        with beats.busy("worker:b", role="worker", what="job x (slow)", timeout=10):
            clock.now += 11
            workers = by_name(beats, clock.now)["workers"]
            assert workers.status == "critical", workers
    finally:
        alive.set()
        other.join()


def test_a_silent_scheduler_is_noticed() -> None:
    clock = FakeClock()
    beats = Heartbeats(clock=clock)
    assert liveness_checks(beats.snapshot(), now=clock.now) == []  # nobody registered: no check
    beats.beat("scheduler", role="scheduler", every=10)
    clock.now += 30
    assert by_name(beats, clock.now)["scheduler"].status == "healthy"
    clock.now += 1
    silent = by_name(beats, clock.now)["scheduler"]
    assert silent.status == "degraded" and "silent for 31s" in silent.detail


def test_the_scheduler_beats_through_apscheduler(sqlite_hubenv: HubEnv) -> None:
    from runtime.checkpoints.schedule import CheckpointScheduler

    settings = sqlite_hubenv.settings(checkpoint_schedule="0 0 * * *", health_heartbeat_seconds=0.05)
    beats = Heartbeats()
    scheduler = CheckpointScheduler(
        settings=settings, db=sqlite_hubenv.services().db, vmid=100, job=lambda: None, heartbeats=beats
    )
    scheduler.start()
    try:
        first = beats.snapshot()[0].last
        wait_for(lambda: beats.snapshot()[0].last > first)  # beaten again by the interval job
        assert beats.snapshot()[0].role == "scheduler"
    finally:
        scheduler.shutdown(wait=True)
    assert beats.snapshot() == []


# ------------------------------------------------------- workers in other processes (the registry)


def _worker_row(env: HubEnv, *, host: str, pid: int, age: float, role: str = "worker") -> str:
    """A registry row as a worker on another host writes it, last heartbeat ``age`` seconds ago."""
    from datetime import UTC, datetime, timedelta

    from runtime.db import Worker
    from runtime.db.models import new_uuid

    at = datetime.now(UTC) - timedelta(seconds=age)
    worker_id = new_uuid()
    with env.services().ready_db().session() as s:
        s.add(
            Worker(
                id=worker_id,
                host=host,
                pid=pid,
                token=f"{host}:{pid}:123:1",
                role=role,
                started_at=at,
                heartbeat_at=at,
            )
        )
    return worker_id


def _age(env: HubEnv, worker_id: str, age: float) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from runtime.db import Worker

    with env.services().db.session() as s:
        s.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(heartbeat_at=datetime.now(UTC) - timedelta(seconds=age))
        )


def _workers_check(env: HubEnv, beats: Heartbeats | None = None, now: float | None = None) -> Any:
    from runtime.health.checks import worker_registry

    services = env.services()
    beats = beats or Heartbeats()
    checks = liveness_checks(
        beats.snapshot(), now=now if now is not None else time.time(), registry=worker_registry(services)
    )
    return {c.name: c for c in checks}.get("workers")


def test_workers_in_other_processes_are_seen_through_the_registry(sqlite_hubenv: HubEnv) -> None:
    """A process without job threads of its own (serve with HUB_WORKER_THREADS=0, hubctl health):
    healthy while a worker anywhere heartbeats; critical when jobs are queued and none does."""
    from runtime.jobs.store import JobStore

    env = sqlite_hubenv
    stale = env.services().settings.worker_stale_seconds
    assert _workers_check(env) is None  # no worker ever registered, nothing queued: no check

    other = _worker_row(env, host="worker-host-1", pid=4242, age=1)
    check = _workers_check(env)
    assert check.status == "healthy", check
    assert check.detail == "1 live worker process(es) of 1 registered (worker), 0 job(s) queued"

    _age(env, other, stale + 1)  # its heartbeat went stale: the process or its host is gone
    check = _workers_check(env)
    assert check.status == "degraded" and check.detail.startswith("no live worker (the next job will wait)")

    JobStore(env.services().ready_db()).create(kind="checkpoint.create", params={}, actor="test")
    check = _workers_check(env)
    assert check.status == "critical", check
    assert check.detail == (
        "no live worker to run the queued jobs: 0 live worker process(es) of 1 registered, 1 job(s) queued"
    )

    _worker_row(env, host="worker-host-2", pid=77, age=0, role="serve")  # another one comes up
    check = _workers_check(env)
    assert check.status == "healthy", check
    assert check.detail == "1 live worker process(es) of 2 registered (serve), 1 job(s) queued"


def test_every_local_thread_hung_is_critical_only_when_no_other_process_works(sqlite_hubenv: HubEnv) -> None:
    """The in-process detection stays: this process's threads all hung is critical, unless a live
    worker in another process can run the jobs (then degraded, naming the hung thread)."""
    env = sqlite_hubenv
    clock = FakeClock()
    beats = Heartbeats(clock=clock)
    alive = threading.Event()
    thread = threading.Thread(target=alive.wait, args=(30,))
    thread.start()
    try:
        beats.watch_thread("worker:a", thread, role="worker")
        with beats.busy("worker:a", role="worker", what="job x (slow)", timeout=10):
            clock.now += 11
            check = _workers_check(env, beats, clock.now)
            assert check.status == "critical" and "worker:a hung" in check.detail, check
            other = _worker_row(env, host="worker-host-1", pid=4242, age=1)
            check = _workers_check(env, beats, clock.now)
            assert check.status == "degraded", check
            assert (
                "worker:a hung" in check.detail
                and "1 live worker process(es) of 1 registered" in check.detail
            )
            _age(env, other, env.services().settings.worker_stale_seconds + 1)
            assert _workers_check(env, beats, clock.now).status == "critical"
    finally:
        alive.set()
        thread.join()
