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
