"""The ladder against fakepve and a Hub health endpoint the test controls: rungs in order, the first
healthy gate ends it, all bad ends in `error` with one alert and then nothing, quarantine kept."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

from runtime.checkpoints.naming import owned
from runtime.sentinel.alerts import Alerter
from runtime.sentinel.records import Action, SentinelState
from tests.support.hubenv import HUB_VMID
from tests.support.sentinel import (
    Alerts,
    FakeClock,
    FakeHub,
    add_checkpoint,
    changes,
    make_sentinel,
    serve_hub,
)


def _emergency_snapshots(pve: Any) -> list[str]:
    found = []
    for name, snap in pve.vm(HUB_VMID).snapshots.items():
        claim = owned(name, snap.get("description") or "")
        if claim is not None and claim.kind == "emergency" and claim.reason == "pre-recovery":
            found.append(name)
    return found


def _rollbacks(pve: Any, since: int = 0) -> list[str]:
    return [p.split("/snapshot/")[1].split("/")[0] for m, p in changes(pve, since) if p.endswith("/rollback")]


def _checkpoints(pve: Any, clock: FakeClock) -> dict[str, str]:
    """Five checkpoints: two blessed recent, two unblessed recent (newest of all), one blessed 10 days old."""
    now = clock.now
    return {
        "newest": add_checkpoint(pve, now - timedelta(hours=1)),
        "blessed1": add_checkpoint(pve, now - timedelta(hours=5), blessed=True),
        "newer": add_checkpoint(pve, now - timedelta(hours=3)),
        "blessed2": add_checkpoint(pve, now - timedelta(days=1), blessed=True, vmstate=True),
        "old": add_checkpoint(pve, now - timedelta(days=10), blessed=True),
        "emergency": add_checkpoint(pve, now - timedelta(minutes=5), kind="emergency", reason="pre-recovery"),
    }


def test_each_rung_in_order_and_the_first_healthy_gate_ends_the_ladder(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    snaps = _checkpoints(pve, clock)
    hub = FakeHub(pve, good={snaps["blessed2"]})
    alerts = Alerts()
    with serve_hub(hub) as url:
        sentinel = make_sentinel(
            pve, fakepve_cafile, tmp_path / "s.db", url, clock, alerter=Alerter(alerts.deliver)
        )
        hub.arm()
        start = len(pve.requests)
        outcome = sentinel.recover()
        sentinel.alerter.close()

    assert outcome.result == "healthy", outcome.detail
    # Rung 0 first: one emergency snapshot before any destructive call; it is never a candidate.
    done = changes(pve, start)
    first_destructive = next(
        i for i, (_m, p) in enumerate(done) if p.endswith(("/status/shutdown", "/rollback"))
    )
    assert any(p.endswith(f"/qemu/{HUB_VMID}/snapshot") for _m, p in done[:first_destructive])
    assert len(_emergency_snapshots(pve)) == 2  # the planted one and the one just taken
    # Rung 1, then rung 2: blessed newest first, stopping at the first healthy gate.
    power = [i for i, (_m, p) in enumerate(done) if p.endswith(("/status/shutdown", "/status/start"))]
    first_rollback = next(i for i, (_m, p) in enumerate(done) if p.endswith("/rollback"))
    assert [done[i][1].rsplit("/", 1)[1] for i in power] == ["shutdown", "start"]
    assert power[-1] < first_rollback
    assert _rollbacks(pve, start) == [snaps["blessed1"], snaps["blessed2"]]
    assert [s.action for s in outcome.steps if s.outcome] == [
        Action.EMERGENCY,
        Action.RESTART,
        Action.ROLLBACK,
        Action.ROLLBACK,
    ]
    # The one that failed its gate is quarantined; the healthy one is not; the rest never touched.
    assert set(sentinel.store.quarantined(HUB_VMID)) == {snaps["blessed1"]}
    assert sentinel.store.hub(HUB_VMID, clock()).state is SentinelState.WATCHING
    assert [(a.event, a.outcome) for a in alerts.sent] == [("recovered", "healthy")]
    healed = owned(snaps["blessed2"], pve.vm(HUB_VMID).snapshots[snaps["blessed2"]]["description"])
    assert healed is not None and alerts.sent[0].checkpoint == healed.uuid
    # The lease is released after a healthy end.
    assert "hub-sentinel-lease:" not in pve.vm(HUB_VMID).config.get("description", "")


def test_restart_alone_heals_and_no_rollback_is_made(pve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    clock = FakeClock()
    _checkpoints(pve, clock)
    hub = FakeHub(pve, restart_heals=True)
    with serve_hub(hub) as url:
        sentinel = make_sentinel(pve, fakepve_cafile, tmp_path / "s.db", url, clock)
        hub.arm()
        start = len(pve.requests)
        outcome = sentinel.recover()
    assert outcome.result == "healthy"
    assert _rollbacks(pve, start) == []
    assert sentinel.store.quarantined(HUB_VMID) == {}


def test_all_bad_ends_in_error_with_one_alert_and_nothing_more_for_24_hours(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    snaps = _checkpoints(pve, clock)
    hub = FakeHub(pve)  # nothing heals it
    alerts = Alerts()
    with serve_hub(hub) as url:
        sentinel = make_sentinel(
            pve, fakepve_cafile, tmp_path / "s.db", url, clock, alerter=Alerter(alerts.deliver)
        )
        hub.arm()
        start = len(pve.requests)
        outcome = sentinel.recover()
        # Rung 2: up to three recent ones, blessed first; rung 3: the blessed one >= 7 days old.
        assert outcome.result == "error"
        assert _rollbacks(pve, start) == [snaps["blessed1"], snaps["blessed2"], snaps["newest"], snaps["old"]]
        assert snaps["emergency"] not in _rollbacks(pve, start)
        assert sentinel.store.hub(HUB_VMID, clock()).state is SentinelState.ERROR

        # 24 h of simulated time, probing every 15 s, the Hub still critical: not one request.
        after = len(pve.requests)
        probes_before = hub.seen
        for _ in range(24 * 60 * 4):
            clock.sleep(15)
            assert sentinel.tick() is None
        assert sentinel.recover().result == "error"
        assert len(pve.requests) == after
        assert hub.seen == probes_before
        # A second sentinel (its own database) sees the error mark on Proxmox and does not start over.
        other = make_sentinel(pve, fakepve_cafile, tmp_path / "other.db", url, clock)
        assert other.recover().result == "lease-held"
        assert _rollbacks(pve, after) == []
        sentinel.alerter.close()
    assert [(a.event, a.outcome) for a in alerts.sent] == [("error", "error")]


def test_reset_lets_it_act_again_and_quarantine_survives_restarts(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    snaps = _checkpoints(pve, clock)
    hub = FakeHub(pve, good={snaps["blessed2"]})
    db = tmp_path / "s.db"
    with serve_hub(hub) as url:
        first = make_sentinel(pve, fakepve_cafile, db, url, clock)
        hub.arm()
        assert first.recover().result == "healthy"
        first.store.close()

        # A new process on the same database: the quarantined checkpoint is not planned again.
        clock.sleep(24 * 3600)
        hub.good = {snaps["newest"]}
        hub.arm()
        second = make_sentinel(pve, fakepve_cafile, db, url, clock)
        plan = second.plan(second.hub.ref())
        planned = [s.snapname for s in plan if s.action is Action.ROLLBACK]
        assert snaps["blessed1"] not in planned
        assert planned[0] == snaps["blessed2"]
        start = len(pve.requests)
        assert second.recover().result == "healthy"
        assert snaps["blessed1"] not in _rollbacks(pve, start)


def test_runs_are_capped_per_day_with_back_off_between_runs(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    _checkpoints(pve, clock)
    hub = FakeHub(pve, restart_heals=True)
    with serve_hub(hub) as url:
        sentinel = make_sentinel(
            pve, fakepve_cafile, tmp_path / "s.db", url, clock, backoff_seconds=600, max_runs_per_day=2
        )
        hub.arm()
        assert sentinel.recover().result == "healthy"
        hub.arm()  # it breaks again at once
        start = len(pve.requests)
        assert sentinel.recover().result == "backoff"
        assert changes(pve, start) == []
        clock.sleep(601)
        assert sentinel.recover().result == "healthy"
        hub.arm()
        clock.sleep(3600)
        start = len(pve.requests)
        assert sentinel.recover().result == "capped"
        assert changes(pve, start) == []


def test_watch_acts_only_after_k_critical_probes(pve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    clock = FakeClock()
    _checkpoints(pve, clock)
    hub = FakeHub(pve, restart_heals=True)
    with serve_hub(hub) as url:
        sentinel = make_sentinel(pve, fakepve_cafile, tmp_path / "s.db", url, clock, critical_probes=3)
        hub.arm()
        start = len(pve.requests)
        assert sentinel.tick() is None
        assert sentinel.tick() is None
        assert changes(pve, start) == []
        outcome = sentinel.tick()
        assert outcome is not None and outcome.result == "healthy"


def test_a_hung_hub_and_a_stopped_vm_are_critical_but_an_operators_maintenance_is_not(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    hub = FakeHub(pve, initial="healthy")
    with serve_hub(hub) as url:
        sentinel = make_sentinel(pve, fakepve_cafile, tmp_path / "s.db", url, clock)
        assert sentinel.assess().verdict == "healthy"
        hub.hang = True
        hung = sentinel.assess()
        assert hung.verdict == "critical" and "hung" in hung.reason
        hub.hang = False
        vm = pve.vm(HUB_VMID)
        vm.status = vm.qmpstatus = "stopped"
        assert sentinel.assess().verdict == "critical"
        vm.status, vm.qmpstatus = "running", "paused"
        assert sentinel.assess().verdict == "critical"
        vm.config["tags"] = "hub-maintenance"
        assert sentinel.assess().verdict == "maintenance"
        start = len(pve.requests)
        assert sentinel.recover().result == "maintenance"
        assert changes(pve, start) == []
