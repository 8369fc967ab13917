"""Scheduled fleet checkpoints per project, on the leader's scheduler (runtime/fleet/schedules.py):
a project's cron (UTC) submits ``fleet.checkpoint`` for that project, which checkpoints its machines
and no other VM; a project scheduled after the scheduler started is picked up, one unscheduled is
dropped. The clock is controlled (time_machine) as in tests/runtime/checkpoints/test_schedule.py."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine

from runtime import domains
from runtime.checkpoints.schedule import CheckpointScheduler
from runtime.fleet.schedules import KIND, ProjectSchedules, fleet_params
from runtime.jobs.queue import JobQueue
from runtime.jobs.store import JobStore
from runtime.machines.projects import ProjectStore
from runtime.settings import Environment
from tests.runtime.fleet import cluster
from tests.support.hubenv import HubEnv

MIDNIGHT = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
QUARTER_PAST = MIDNIGHT + timedelta(minutes=15)


class _Submitted:
    """What the scheduler submitted, with the time it did (the job itself runs after the travel)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, object], datetime]] = []
        self.event = threading.Event()

    def __call__(self, kind: str, params: dict[str, object]) -> None:
        self.calls.append((kind, params, datetime.now(UTC)))
        self.event.set()


def _scheduler(env: HubEnv, submitted: _Submitted, *, sync_seconds: float = 60) -> tuple[Any, Any]:
    services = env.services(environment=Environment.DEVELOPMENT)  # the Hub's own schedule: manual
    projects = ProjectSchedules(
        projects=ProjectStore(services.ready_db()), submit=submitted, sync_seconds=sync_seconds
    )
    scheduler = CheckpointScheduler(
        settings=services.settings, db=services.db, vmid=100, job=lambda: None, parts=[projects]
    )
    return scheduler, projects


def test_a_projects_cron_fires_a_fleet_checkpoint_of_its_machines(fleet_env: HubEnv, fleet: Any) -> None:
    store = ProjectStore(fleet_env.services().ready_db())
    store.create("alpha", checkpoint_schedule="15 0 * * *")
    store.create("beta", checkpoint_schedule="0 3 * * *")
    store.create("gamma")  # no schedule: nothing fires for it
    submitted = _Submitted()
    with time_machine.travel(QUARTER_PAST - timedelta(seconds=5), tick=True):
        scheduler, projects = _scheduler(fleet_env, submitted)
        scheduler.start()  # the Hub's own schedule is manual: the projects alone start it
        try:
            assert projects.scheduled() == {"alpha": "15 0 * * *", "beta": "0 3 * * *"}
            assert submitted.event.wait(timeout=20), "alpha's 00:15 UTC did not fire"
            assert not threading.Event().wait(2)  # and nothing else (beta is at 03:00)
        finally:
            scheduler.shutdown()
    assert [(kind, params) for kind, params, _ in submitted.calls] == [
        ("fleet.checkpoint", {"project": "alpha", "kind": "scheduled", "reason": "schedule of project alpha"})
    ]
    assert QUARTER_PAST <= submitted.calls[0][2] < QUARTER_PAST + timedelta(seconds=5)

    # The submitted job, run by a real queue: alpha's machines get scheduled checkpoints, nothing else.
    before = len(fleet.requests)
    queue = JobQueue(fleet_env.services(), kinds=domains.job_kinds(), worker_threads=2)
    queue.start_workers()
    try:
        kind, params, _ = submitted.calls[0]
        job = queue.submit(kind, dict(params), actor="scheduler")
        deadline = time.monotonic() + 120
        while (done := queue.store.get(job["id"]))["state"] not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, done
            time.sleep(0.2)
    finally:
        queue.stop_workers(timeout_ms=30_000)
    assert done["state"] == "succeeded", done
    result = done["result"]
    assert (result["total"], result["completed"], result["failed"]) == (
        len(cluster.ALPHA),
        len(cluster.ALPHA),
        0,
    )
    assert sorted(r["vm_id"] for r in result["results"]) == sorted(cluster.ALPHA)
    rows = fleet_env.queries().list()
    assert {r.vm_id for r in rows} == set(cluster.ALPHA)
    assert {(r.kind, r.label, r.status) for r in rows} == {("scheduled", "scheduled", "completed")}
    snapshot_posts = [p for m, p, _ in fleet.requests[before:] if m == "POST" and p.endswith("/snapshot")]
    assert sorted(int(p.split("/qemu/")[1].split("/")[0]) for p in snapshot_posts) == sorted(cluster.ALPHA)


def test_a_project_scheduled_after_start_is_picked_up_and_one_unscheduled_dropped(
    fleet_env: HubEnv,
) -> None:
    store = ProjectStore(fleet_env.services().ready_db())
    store.create("alpha", checkpoint_schedule="15 0 * * *")
    submitted = _Submitted()
    with time_machine.travel(QUARTER_PAST - timedelta(seconds=20), tick=True):
        scheduler, projects = _scheduler(fleet_env, submitted, sync_seconds=1)
        scheduler.start()
        try:
            assert projects.scheduled() == {"alpha": "15 0 * * *"}
            # While the scheduler runs: beta created with the same fire time, alpha's schedule cleared.
            store.create("beta", checkpoint_schedule="15 0 * * *")
            store.set("alpha", checkpoint_schedule=None)
            deadline = time.monotonic() + 10
            while projects.scheduled() != {"beta": "15 0 * * *"}:
                assert time.monotonic() < deadline, projects.scheduled()
                time.sleep(0.1)
            assert submitted.event.wait(timeout=40), "beta's 00:15 UTC did not fire"
            assert not threading.Event().wait(2)
        finally:
            scheduler.shutdown()
    assert [params["project"] for _, params, _ in submitted.calls] == ["beta"]


def test_the_service_runs_a_projects_schedule(fleet_env: HubEnv) -> None:
    """The real `hubctl serve` (its leader's scheduler): a project scheduled every minute gets a
    fleet.checkpoint job from the scheduler within the minute, which checkpoints its machines."""
    from sqlalchemy import select

    from runtime.db import Job
    from tests.support.service import Service, free_port, make_token

    ProjectStore(fleet_env.services().ready_db()).create("beta", checkpoint_schedule="* * * * *")
    svc = Service(env=fleet_env, port=free_port(), token=make_token(fleet_env, "tests"))
    svc.start()
    try:
        deadline = time.monotonic() + 150  # the next minute boundary, then the job itself

        def scheduled() -> list[Job]:
            with fleet_env.services().db.session() as s:
                return list(s.scalars(select(Job).where(Job.kind == "fleet.checkpoint")))

        while not (jobs := scheduled()) or jobs[0].state not in ("succeeded", "failed"):
            assert time.monotonic() < deadline, [(j.state, j.error) for j in jobs]
            time.sleep(0.5)
    finally:
        code, err = svc.stop()
    assert code == 0, err
    job = jobs[0]
    assert (job.actor, job.params["project"], job.params["kind"]) == ("scheduler", "beta", "scheduled")
    assert job.state == "succeeded", job.error
    assert job.result is not None
    assert sorted(r["vm_id"] for r in job.result["results"]) == sorted(cluster.BETA)
    assert "project beta: scheduled fleet checkpoints at '* * * * *'" in err


def test_a_fire_time_missed_while_no_hub_led_is_caught_up_once_per_project(fleet_env: HubEnv) -> None:
    """At start, each project whose cron fired since the scheduler last ran it gets one run at once,
    however many fire times were missed; the memory is the jobs table, so a second start (the
    catch-up's own job now on record) does not run it again. A project the scheduler never ran, or
    ran after its last fire time, is left to its next fire time."""
    db = fleet_env.services().ready_db()
    store = ProjectStore(db)
    for name in ("alpha", "beta", "gamma"):
        store.create(name, checkpoint_schedule="0 0 * * *")
    jobs = JobStore(db)
    with time_machine.travel(MIDNIGHT - timedelta(days=2, minutes=-1)):  # alpha: two fire times ago
        jobs.create(kind=KIND, params=fleet_params("alpha"), actor="scheduler")
    with time_machine.travel(MIDNIGHT + timedelta(minutes=1)):  # beta: after the last fire time
        jobs.create(kind=KIND, params=fleet_params("beta"), actor="scheduler")
        jobs.create(kind=KIND, params=fleet_params("alpha"), actor="operator")  # not the scheduler's run

    submitted = _Submitted()

    def submit(kind: str, params: dict[str, object]) -> None:  # as the service does: a job row
        jobs.create(kind=kind, params=dict(params), actor="scheduler")
        submitted(kind, params)

    def start() -> CheckpointScheduler:
        projects = ProjectSchedules(
            projects=store,
            submit=submit,
            last_run=lambda name: jobs.last_submitted(KIND, actor="scheduler", param=("project", name)),
        )
        services = fleet_env.services(environment=Environment.DEVELOPMENT)
        scheduler = CheckpointScheduler(
            settings=services.settings, db=services.db, vmid=100, job=lambda: None, parts=[projects]
        )
        scheduler.start()
        return scheduler

    with time_machine.travel(MIDNIGHT + timedelta(hours=2), tick=True):
        scheduler = start()
        try:
            assert submitted.event.wait(timeout=20), "alpha's missed run was not caught up"
            assert not threading.Event().wait(2)  # once, and for alpha only
        finally:
            scheduler.shutdown()
        assert [params["project"] for _, params, _ in submitted.calls] == ["alpha"]
        scheduler = start()  # a restart (or the next leader): the catch-up is on record now
        try:
            assert not threading.Event().wait(2)
        finally:
            scheduler.shutdown()
    assert [params["project"] for _, params, _ in submitted.calls] == ["alpha"]


def test_the_service_catches_up_a_projects_missed_run(fleet_env: HubEnv) -> None:
    """The real `hubctl serve` wires the memory: a project whose daily run was last submitted two
    days ago gets a fleet.checkpoint from the scheduler as the service starts, not at midnight."""
    from tests.support.service import Service, free_port, make_token

    db = fleet_env.services().ready_db()
    ProjectStore(db).create("beta", checkpoint_schedule="0 0 * * *")
    jobs = JobStore(db)
    with time_machine.travel(datetime.now(UTC) - timedelta(days=2)):
        old = jobs.create(kind=KIND, params=fleet_params("beta"), actor="scheduler")
    svc = Service(env=fleet_env, port=free_port(), token=make_token(fleet_env, "tests"))
    svc.start()
    try:
        deadline = time.monotonic() + 60
        while not (
            caught := [j for j in jobs.page(limit=100)[0] if j["kind"] == KIND and j["id"] != old["id"]]
        ):
            assert time.monotonic() < deadline, "no catch-up job"
            time.sleep(0.3)
    finally:
        code, err = svc.stop()
    assert code == 0, err
    assert caught[0]["actor"] == "scheduler"
    assert fleet_params("beta").items() <= caught[0]["params"].items()  # the queue adds the defaults
    assert "project beta: missed a scheduled checkpoint while no Hub led" in err
