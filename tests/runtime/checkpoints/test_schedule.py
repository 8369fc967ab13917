"""Scheduled checkpoints: production fires daily at 00:00 UTC (APScheduler), development never,
and one catch-up run follows downtime however many fire times were missed."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import time_machine

from runtime.checkpoints.records import CheckpointKind
from runtime.checkpoints.schedule import CheckpointScheduler, catch_up_due, next_fire
from runtime.settings import Environment
from tests.support.hubenv import HubEnv

MIDNIGHT = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)


def test_defaults_follow_the_environment(sqlite_hubenv: HubEnv) -> None:
    prod = sqlite_hubenv.settings(environment=Environment.PRODUCTION)
    dev = sqlite_hubenv.settings(environment=Environment.DEVELOPMENT)
    assert prod.effective_schedule == "0 0 * * *"
    assert dev.effective_schedule == "manual"
    assert next_fire(prod, after=MIDNIGHT - timedelta(hours=5)) == MIDNIGHT
    assert next_fire(prod, after=MIDNIGHT) == MIDNIGHT + timedelta(days=1)
    assert next_fire(dev, after=MIDNIGHT) is None


def test_catch_up_is_one_run_however_long_the_downtime(sqlite_hubenv: HubEnv) -> None:
    prod = sqlite_hubenv.settings(environment=Environment.PRODUCTION)
    last = MIDNIGHT - timedelta(days=1)
    assert not catch_up_due(prod, last=last, now=MIDNIGHT - timedelta(seconds=1))
    assert catch_up_due(prod, last=last, now=MIDNIGHT + timedelta(minutes=1))
    assert catch_up_due(prod, last=last, now=MIDNIGHT + timedelta(days=5))  # still one run, not five
    assert not catch_up_due(prod, last=None, now=MIDNIGHT + timedelta(days=5))


def _collecting(env: HubEnv, **settings: Any) -> tuple[CheckpointScheduler, list[datetime], threading.Event]:
    fired: list[datetime] = []
    done = threading.Event()

    def job() -> None:
        fired.append(datetime.now(UTC))
        done.set()

    services = env.services(**settings)
    scheduler = CheckpointScheduler(settings=services.settings, db=services.ready_db(), vmid=100, job=job)
    return scheduler, fired, done


def test_scheduler_fires_at_midnight_utc_on_a_controlled_clock(sqlite_hubenv: HubEnv) -> None:
    with time_machine.travel(MIDNIGHT - timedelta(seconds=5), tick=True):
        scheduler, fired, done = _collecting(sqlite_hubenv, environment=Environment.PRODUCTION)
        assert scheduler.start() is False  # no history: nothing to catch up
        try:
            assert scheduler.next_run() == MIDNIGHT
            assert done.wait(timeout=20), "the scheduler did not fire at 00:00 UTC"
        finally:
            scheduler.shutdown()
    assert len(fired) == 1
    assert MIDNIGHT <= fired[0] < MIDNIGHT + timedelta(seconds=5)


def test_development_schedules_nothing(sqlite_hubenv: HubEnv) -> None:
    with time_machine.travel(MIDNIGHT - timedelta(seconds=1), tick=True):
        scheduler, fired, done = _collecting(sqlite_hubenv, environment=Environment.DEVELOPMENT)
        assert scheduler.start() is False
        assert not scheduler.enabled
        assert not done.wait(timeout=3)
        scheduler.shutdown()
    assert fired == []


def test_catch_up_runs_once_at_start_after_downtime(sqlite_hubenv: HubEnv, pve: Any) -> None:
    svc = sqlite_hubenv.checkpoints(environment=Environment.PRODUCTION)
    with time_machine.travel(MIDNIGHT - timedelta(days=3, minutes=-1), tick=False):
        svc.create(kind=CheckpointKind.SCHEDULED)  # the last scheduled run, 3 days ago
    with time_machine.travel(MIDNIGHT + timedelta(hours=9), tick=True):
        scheduler, fired, done = _collecting(sqlite_hubenv, environment=Environment.PRODUCTION)
        assert scheduler.start() is True
        try:
            assert done.wait(timeout=20)
            assert not threading.Event().wait(2)  # and nothing more in the next seconds
        finally:
            scheduler.shutdown()
    assert len(fired) == 1


def test_scheduled_job_takes_a_scheduled_checkpoint(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """The service's job is a real scheduled checkpoint (the same code path `hubctl serve` uses)."""
    svc = sqlite_hubenv.checkpoints(environment=Environment.PRODUCTION)
    done = threading.Event()

    def job() -> None:
        svc.create(kind=CheckpointKind.SCHEDULED, reason="schedule")
        done.set()

    with time_machine.travel(MIDNIGHT - timedelta(seconds=5), tick=True):
        scheduler = CheckpointScheduler(settings=svc.settings, db=svc.db, vmid=100, job=job)
        scheduler.start()
        try:
            assert done.wait(timeout=20)
        finally:
            scheduler.shutdown()
    rows = sqlite_hubenv.queries().list()
    assert [(r.kind, r.status) for r in rows] == [("scheduled", "completed")]


def test_schedule_show_command(sqlite_hubenv: HubEnv) -> None:
    result = sqlite_hubenv.run("checkpoint", "schedule", "--show", "--json", HUB_ENVIRONMENT="production")
    assert result.returncode == 0, result.stderr
    assert '"schedule": "0 0 * * *"' in result.stdout
    assert "T00:00:00+00:00" in result.stdout


def test_schedule_command_catches_up_then_stops_on_sigterm(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """`hubctl checkpoint schedule` in the foreground: reconcile, one catch-up run, clean exit."""
    import signal
    import time

    svc = sqlite_hubenv.checkpoints(environment=Environment.PRODUCTION)
    with time_machine.travel(datetime.now(UTC) - timedelta(days=2), tick=False):
        svc.create(kind=CheckpointKind.SCHEDULED)  # last scheduled run: two days ago
    proc = sqlite_hubenv.spawn("checkpoint", "schedule", HUB_ENVIRONMENT="production")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        rows = [r for r in sqlite_hubenv.queries().list() if r.kind == "scheduled"]
        if len(rows) == 2 and rows[0].status == "completed":
            break
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "catching up" in out
    rows = [r for r in sqlite_hubenv.queries().list() if r.kind == "scheduled"]
    assert [r.status for r in rows] == ["completed", "completed"]
