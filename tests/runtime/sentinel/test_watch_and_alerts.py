"""`hubctl sentinel watch` as a real process, slow Proxmox tasks, and alert deduplication."""

from __future__ import annotations

import json
import signal
import socket
import time
import urllib.request
from datetime import timedelta
from pathlib import Path
from typing import Any

from runtime.sentinel.alerts import Alert, Alerter
from runtime.sentinel.store import SentinelStore
from tests.support.hubenv import HUB_VMID, make_env
from tests.support.sentinel import (
    Alerts,
    FakeClock,
    FakeHub,
    add_checkpoint,
    changes,
    make_sentinel,
    serve_hub,
)


def test_watch_recovers_a_hung_hub_and_stops_cleanly_on_sigterm(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    good = add_checkpoint(pve, FakeClock().now - timedelta(hours=1), blessed=True)
    hub = FakeHub(pve, good={good}, hang=False)
    db = tmp_path / "sentinel.db"
    env = make_env(
        pve,
        fakepve_cafile,
        tmp_path,
        f"sqlite:///{db}",
        HUB_SENTINEL_GATE_TIMEOUT_SECONDS="0.5",
        HUB_SENTINEL_CRITICAL_PROBES="2",
    )
    with serve_hub(hub) as url:
        hub.arm()
        port = _free_port()
        proc = env.spawn(
            "sentinel", "watch", "--hub-url", url, "--probe-interval", "0.1", "--metrics-port", str(port)
        )
        try:
            store = SentinelStore.open(f"sqlite:///{db}")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # a bound on a broken test, not a timing assertion
                runs = store.runs(HUB_VMID) if db.exists() else []
                if runs and runs[0].outcome is not None:
                    break
                time.sleep(0.1)
            store.close()
            # The run's outcome is written before its counter moves: wait (bounded) for the counter
            # rather than read it once, which raced the sentinel's next statement under load.
            while True:
                metrics = (
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read().decode()
                )
                if (
                    'hub_sentinel_ladder_runs_total{outcome="healthy"}' in metrics
                    or time.monotonic() > deadline
                ):
                    break
                time.sleep(0.1)
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert proc.returncode == 0, err
    assert runs and runs[0].outcome == "healthy"
    assert "watching VM 100" in out
    assert hub.verdict() == "healthy"
    assert 'hub_sentinel_ladder_runs_total{outcome="healthy"} 1.0' in metrics
    assert 'hub_sentinel_probes_total{verdict="critical"}' in metrics


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_slow_tasks_are_waited_for(pve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    clock = FakeClock()
    good = add_checkpoint(pve, clock.now - timedelta(hours=1), blessed=True)
    pve.time_scale = 0.02  # PVE seconds -> real ones: each task below takes a while
    vm = pve.vm(HUB_VMID)
    vm.shutdown_secs, vm.start_secs, vm.stop_secs = 20, 10, 5
    hub = FakeHub(pve, good={good})
    with serve_hub(hub) as url:
        sentinel = make_sentinel(pve, fakepve_cafile, tmp_path / "s.db", url, clock)
        hub.arm()
        start = len(pve.requests)
        outcome = sentinel.recover()
    assert outcome.result == "healthy", outcome.detail
    assert [s.outcome for s in outcome.steps[:3]] == ["taken", "unhealthy", "healthy"]
    assert any(p.endswith("/status/start") for _m, p in changes(pve, start))


def test_alerts_are_deduplicated_and_a_failing_endpoint_is_retried() -> None:
    now = [0.0]
    attempts: list[str] = []

    def deliver(alert: Alert) -> bool:
        attempts.append(alert.event)
        return len(attempts) > 1  # the first attempt fails, the retry succeeds

    alerter = Alerter(deliver, attempts=3, backoff_seconds=0.01, dedup_seconds=3600, clock=lambda: now[0])
    first = Alert("error", None, "error", "every rung failed")
    assert alerter.send(first)
    assert not alerter.send(Alert("error", None, "error", "every rung failed, again"))
    now[0] = 3601.0
    assert alerter.send(first)
    alerter.close(wait_seconds=30)
    assert attempts == ["error", "error", "error"]  # 1 failed + 1 retried, then the one an hour later


def test_a_capped_sentinel_says_so_once(pve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    clock = FakeClock()
    add_checkpoint(pve, clock.now - timedelta(hours=1))
    alerts = Alerts()
    hub = FakeHub(pve, restart_heals=True)
    with serve_hub(hub) as url:
        sentinel = make_sentinel(
            pve,
            fakepve_cafile,
            tmp_path / "s.db",
            url,
            clock,
            alerter=Alerter(alerts.deliver),
            max_runs_per_day=1,
        )
        hub.arm()
        assert sentinel.recover().result == "healthy"
        hub.arm()
        clock.sleep(3600)
        assert sentinel.recover().result == "capped"
        assert sentinel.recover().result == "capped"
        sentinel.alerter.close()
    assert [a.event for a in alerts.sent] == ["recovered", "capped"]
    assert json.dumps(alerts.sent[-1].body())
