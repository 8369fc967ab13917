"""Proxmox faults during the ladder, a sentinel killed mid-ladder, and two sentinels at once."""

from __future__ import annotations

import os
import signal
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

from runtime.sentinel.records import Action, StepStatus
from runtime.sentinel.store import SentinelStore
from tests.support.hubenv import HUB_VMID, NODE, make_env
from tests.support.sentinel import FakeClock, FakeHub, add_checkpoint, changes, make_sentinel, serve_hub


def _rollbacks(pve: Any, since: int = 0) -> list[str]:
    return [
        p.split("/snapshot/")[1].split("/")[0] for _m, p in changes(pve, since) if p.endswith("/rollback")
    ]


def _count(pve: Any, suffix: str, since: int = 0) -> int:
    return sum(1 for _m, p in changes(pve, since) if p.endswith(suffix))


def _two(pve: Any, clock: FakeClock) -> tuple[str, str]:
    return (
        add_checkpoint(pve, clock.now - timedelta(hours=2), blessed=True),
        add_checkpoint(pve, clock.now - timedelta(hours=6), blessed=True),
    )


def test_a_guest_that_will_not_start_costs_rung_1_only(pve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    clock = FakeClock()
    a, _b = _two(pve, clock)
    pve.vm(HUB_VMID).start_error = "start failed: missing disk"
    hub = FakeHub(pve, good={a}, restart_heals=True)
    with serve_hub(hub) as url:
        sentinel = make_sentinel(pve, fakepve_cafile, tmp_path / "s.db", url, clock)
        hub.arm()
        outcome = sentinel.recover()
    assert outcome.result == "healthy"
    restart = next(s for s in outcome.steps if s.action is Action.RESTART)
    assert restart.outcome == "failed"
    assert any(
        e.kind == "restart" and e.outcome == "failed" and "missing disk" in e.detail
        for e in sentinel.store.events(HUB_VMID)
    )


def test_a_failing_rollback_task_quarantines_that_checkpoint_and_the_next_is_tried(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    a, b = _two(pve, clock)
    pve.fail(
        "POST", f"/nodes/{NODE}/qemu/{HUB_VMID}/snapshot/{a}/rollback", error="too_many_unused_volumes_please"
    )
    hub = FakeHub(pve, good={a, b})
    with serve_hub(hub) as url:
        sentinel = make_sentinel(pve, fakepve_cafile, tmp_path / "s.db", url, clock)
        hub.arm()
        start = len(pve.requests)
        outcome = sentinel.recover()
    assert outcome.result == "healthy"
    assert _rollbacks(pve, start) == [a, b]
    assert a in sentinel.store.quarantined(HUB_VMID)


def test_lost_quorum_does_nothing_and_a_backup_lock_pauses_the_run_which_then_resumes(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    a, _b = _two(pve, clock)
    hub = FakeHub(pve, good={a})
    with serve_hub(hub) as url:
        sentinel = make_sentinel(pve, fakepve_cafile, tmp_path / "s.db", url, clock)
        hub.arm()
        pve.lose_quorum()
        start = len(pve.requests)
        assert sentinel.recover().result == "paused"
        # Only the lease was asked for (and refused): no snapshot, no power action, no lease held.
        assert [p for _m, p in changes(pve, start) if not p.endswith("/config")] == []
        assert "hub-sentinel-lease" not in pve.vm(HUB_VMID).config.get("description", "")
        assert sentinel.store.open_run(HUB_VMID) is None
        pve.regain_quorum()

        # A vzdump holds the VM: PVE refuses the lease's config write too (qemu-server update_vm_api
        # check_lock), so no run starts while it lasts.
        pve.snapshot_lock(HUB_VMID, "backup")
        start = len(pve.requests)
        assert sentinel.recover().result == "paused"
        assert [p for _m, p in changes(pve, start) if not p.endswith("/config")] == []
        pve.unlock(HUB_VMID)

        # A backup that takes the lock mid-run: the shutdown cannot get the config lock ("can't lock
        # file ... got timeout") within the lock budget; the run pauses at rung 1 rather than spend it.
        pve.fail("POST", f"/nodes/{NODE}/qemu/{HUB_VMID}/status/shutdown", error="config_lock_timeout")
        paused = sentinel.recover()
        assert paused.result == "paused", paused.detail
        run = sentinel.store.open_run(HUB_VMID)
        assert run is not None
        assert run.steps[0].outcome == "taken"
        assert run.steps[1].status is StepStatus.STARTED
        pve.failures.clear()
        start = len(pve.requests)
        resumed = sentinel.tick()
        assert resumed is not None and resumed.result == "healthy"
        assert _rollbacks(pve, start) == [a]
        assert _count(pve, f"/qemu/{HUB_VMID}/snapshot", start) == 0  # rung 0 is not redone


def test_killed_mid_ladder_it_resumes_at_the_rung_it_was_in(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    clock = FakeClock()
    a, _b = _two(pve, clock)
    hub = FakeHub(pve, good={a}, frozen=True)
    db = tmp_path / "sentinel.db"
    env = make_env(
        pve, fakepve_cafile, tmp_path, f"sqlite:///{db}", HUB_SENTINEL_PROBE_INTERVAL_SECONDS="0.1"
    )
    with serve_hub(hub) as url:
        hub.arm()
        start = len(pve.requests)
        proc = env.spawn(
            "sentinel",
            "recover",
            "--hub-url",
            url,
            "--gate-timeout",
            "0.5",
            HUB_FAILPOINT="sentinel.rollback.acted",
        )
        try:
            assert proc.stderr is not None
            for line in proc.stderr:
                if "failpoint sentinel.rollback.acted reached" in line:
                    break
            else:
                raise AssertionError(f"the sentinel never reached the failpoint (exit {proc.wait()})")
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            proc.kill()
            proc.wait()
        assert proc.returncode == -signal.SIGKILL
        store = SentinelStore.open(f"sqlite:///{db}")
        run = store.open_run(HUB_VMID)
        store.close()
        assert run is not None
        assert [s.status for s in run.steps[:3]] == [StepStatus.DONE, StepStatus.DONE, StepStatus.STARTED]
        assert _rollbacks(pve, start) == [a]

        hub.frozen = False
        sentinel = make_sentinel(pve, fakepve_cafile, db, url, clock)
        outcome = sentinel.tick()
    assert outcome is not None and outcome.result == "healthy"
    # Rungs 0 and 1 were not redone; the rung it died in was.
    assert _count(pve, f"/qemu/{HUB_VMID}/snapshot", start) == 1
    assert _count(pve, "/status/shutdown", start) == 1
    assert _rollbacks(pve, start) == [a, a]


def test_two_sentinels_at_once_act_once(pve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    clock = FakeClock()
    a, _b = _two(pve, clock)
    hub = FakeHub(pve, good={a})
    with serve_hub(hub) as url:
        sentinels = [make_sentinel(pve, fakepve_cafile, tmp_path / f"s{i}.db", url, clock) for i in range(2)]
        hub.arm()
        start = len(pve.requests)
        barrier = threading.Barrier(2)
        results: list[str] = []

        def run(sentinel: Any) -> None:
            barrier.wait()
            results.append(sentinel.recover().result)

        threads = [threading.Thread(target=run, args=(s,)) for s in sentinels]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert sorted(results) == ["healthy", "lease-held"] or sorted(results) == ["healthy", "nothing"]
    assert _count(pve, f"/qemu/{HUB_VMID}/snapshot", start) == 1
    assert _count(pve, "/status/shutdown", start) == 1
    assert _rollbacks(pve, start) == [a]
