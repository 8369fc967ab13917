"""Blessing: a checkpoint is blessed after the Hub stayed healthy through the window (the loop on a
clock the test controls), never when taken while degraded; the blessing is written onto the
snapshot's description on fakepve and comes back through reconcile when the database forgot it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.checkpoints import naming
from runtime.checkpoints.records import CheckpointRecord
from runtime.db import AuditEntry, Checkpoint
from runtime.health import history
from runtime.health.blessing import Blesser, judge
from runtime.health.history import Sample
from runtime.health.loop import HealthLoop
from runtime.wiring import Services
from tests.support.hubenv import HUB_VMID, HubEnv

WINDOW = 300.0
STEP = timedelta(seconds=30)


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


class Scripted:
    def __init__(self) -> None:
        self.next = "healthy"

    def __call__(self, now: datetime) -> dict[str, Any]:
        return {"status": self.next, "checks": [], "at": now.isoformat()}


@pytest.fixture
def env(sqlite_hubenv: HubEnv) -> HubEnv:
    sqlite_hubenv.values["HUB_BLESS_WINDOW_SECONDS"] = str(WINDOW)
    sqlite_hubenv.values["HUB_HEALTH_INTERVAL_SECONDS"] = "30"
    return sqlite_hubenv


@pytest.fixture
def services(env: HubEnv) -> Iterator[Services]:
    services = env.services()
    yield services
    services.close()


def description(pve: Any, cp: CheckpointRecord) -> str:
    return str(pve.vm(HUB_VMID).snapshots[cp.snapname]["description"])


def run_loop(services: Services, *, start: datetime, until: datetime, script: Scripted) -> HealthLoop:
    clock = Clock(start)
    loop = HealthLoop(services, settings=services.settings, evaluator=script, clock=clock)
    while clock.now <= until:
        loop.tick()
        clock.now += STEP
    return loop


def test_blessed_after_a_healthy_window_and_written_to_the_snapshot(
    env: HubEnv, services: Services, pve: Any
) -> None:
    cp = env.checkpoints().create()
    assert cp.completed_at is not None
    script = Scripted()
    # Healthy from before it was taken until just before the window ends: not yet.
    run_loop(
        services,
        start=cp.created_at - timedelta(seconds=10),
        until=cp.completed_at + timedelta(seconds=WINDOW - 40),
        script=script,
    )
    assert env.queries().show(cp.uuid).blessed_at is None
    assert "hub-blessed" not in description(pve, cp)
    # The window passes, still healthy: blessed, on the row and on the snapshot's description.
    end = cp.completed_at + timedelta(seconds=WINDOW + 30)
    run_loop(services, start=cp.completed_at + timedelta(seconds=WINDOW - 10), until=end, script=script)
    blessed = env.queries().show(cp.uuid)
    assert blessed.blessed_at is not None and blessed.bless_refused is None
    claim = naming.owned(cp.snapname, description(pve, cp))
    assert claim is not None and claim.blessed_at == blessed.blessed_at
    assert claim.uuid == cp.uuid and claim.kind == cp.kind.value  # the rest of the description kept
    assert blessed.to_public()["blessed"] is True
    with services.db.session() as s:
        actions = [(e.action, e.outcome) for e in s.query(AuditEntry).filter(AuditEntry.target == cp.uuid)]
    assert ("checkpoint.bless", "completed") in actions


def test_protecting_a_blessed_checkpoint_keeps_the_blessing_on_the_snapshot(
    env: HubEnv, services: Services, pve: Any
) -> None:
    cp = env.checkpoints().create()
    at = datetime(2026, 11, 2, tzinfo=UTC)
    env.checkpoints().bless(cp.uuid, at=at, why="test")
    env.checkpoints().protect(cp.uuid)
    claim = naming.owned(cp.snapname, description(pve, cp))
    assert claim is not None and claim.protected and claim.blessed_at == at


def test_reimported_with_its_blessing_after_the_row_is_lost(
    env: HubEnv, services: Services, pve: Any
) -> None:
    cp = env.checkpoints().create()
    at = datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC)
    env.checkpoints().bless(cp.uuid, at=at, why="test")
    with services.db.session() as s:
        s.delete(s.get_one(Checkpoint, cp.uuid))
    report = env.reconciler().run(vmid=HUB_VMID)
    assert [c["action"] for c in report.changes] == ["imported"]
    back = env.queries().show(cp.uuid)
    assert back.blessed_at == at


def test_a_database_rolled_back_to_before_the_blessing_takes_it_back(
    env: HubEnv, services: Services, pve: Any
) -> None:
    cp = env.checkpoints().create()
    at = datetime(2026, 11, 2, 3, 4, 5, tzinfo=UTC)
    env.checkpoints().bless(cp.uuid, at=at, why="test")
    with services.db.session() as s:  # the row as the older database knew it
        s.get_one(Checkpoint, cp.uuid).blessed_at = None
    report = env.reconciler().run(vmid=HUB_VMID)
    assert [c["action"] for c in report.changes] == ["blessing restored"]
    assert env.queries().show(cp.uuid).blessed_at == at
    assert env.reconciler().run(vmid=HUB_VMID).changes == []  # idempotent


def test_never_blessed_when_taken_while_degraded(env: HubEnv, services: Services, pve: Any) -> None:
    cp = env.checkpoints().create()
    assert cp.completed_at is not None
    script = Scripted()
    script.next = "degraded"
    clock = Clock(cp.created_at - timedelta(seconds=10))
    loop = HealthLoop(services, settings=services.settings, evaluator=script, clock=clock)
    loop.tick()  # the Hub was degraded when the checkpoint was taken
    script.next = "healthy"
    while clock.now <= cp.completed_at + timedelta(seconds=2 * WINDOW):
        clock.now += STEP
        loop.tick()  # then healthy for twice the window: it stays unblessed
    row = env.queries().show(cp.uuid)
    assert row.blessed_at is None
    assert row.bless_refused is not None and row.bless_refused.startswith("taken while the Hub was degraded")
    assert "hub-blessed" not in description(pve, cp)
    assert row.to_public()["bless_refused"] == row.bless_refused


def test_a_checkpoint_nobody_watched_is_not_blessed(env: HubEnv, services: Services) -> None:
    cp = env.checkpoints().create()
    assert cp.completed_at is not None
    decided = Blesser(services).run(now=cp.completed_at + timedelta(seconds=WINDOW + 1))
    assert decided[cp.uuid].startswith("refused: health not observed")


def test_waiting_changes_nothing(env: HubEnv, services: Services) -> None:
    cp = env.checkpoints().create()
    assert cp.completed_at is not None
    history.record(
        services.db, at=cp.created_at - timedelta(seconds=5), instant="healthy", settled="healthy", checks=[]
    )
    assert Blesser(services).run(now=cp.completed_at + timedelta(seconds=20)) == {}
    row = env.queries().show(cp.uuid)
    assert row.blessed_at is None and row.bless_refused is None


T = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def samples(*points: tuple[int, str, str]) -> list[Sample]:
    return [Sample(T + timedelta(seconds=s), i, d) for s, i, d in points]


def verdict(history_: list[Sample], *, now_s: int = 400) -> tuple[str, str]:
    j = judge(
        created_at=T,
        completed_at=T + timedelta(seconds=5),
        now=T + timedelta(seconds=now_s),
        window=300,
        gap=100,
        samples=history_,
    )
    return j.outcome, j.why


def test_judge() -> None:
    healthy = [(s, "healthy", "healthy") for s in range(-10, 400, 60)]
    assert verdict(samples(*healthy))[0] == "bless"
    assert verdict(samples(*healthy), now_s=200)[0] == "wait"
    # A degraded instant inside the window.
    bad = samples(*healthy, (200, "degraded", "healthy"))
    outcome, why = verdict(bad)
    assert outcome == "refuse" and "degraded at" in why
    # A settled verdict still critical at the time it was taken (recovering Hub).
    outcome, why = verdict(samples((-10, "healthy", "critical"), *healthy[1:]))
    assert outcome == "refuse" and why.startswith("taken while the Hub was critical (settled)")
    # A hole in the history longer than the gap.
    holed = [p for p in healthy if not 100 < p[0] < 300]
    outcome, why = verdict(samples(*holed))
    assert outcome == "refuse" and why.startswith("health not observed")
    # An evaluation after the window does not matter.
    assert verdict(samples(*healthy, (390, "critical", "critical")))[0] == "bless"
