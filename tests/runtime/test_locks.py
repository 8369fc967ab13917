"""Two processes checkpointing the same VM at once: never two overlapping snapshots, with the
file lock (embedded default) and with the Redis lock; Redis configured but down fails closed."""

from __future__ import annotations

import json
import socket
import time
from datetime import datetime
from typing import Any

import pytest

from tests.support.hubenv import HubEnv, hub_snapshots, one_line_error


def slow_snapshots(pve: Any, secs: float) -> None:
    pve.vm(100).config["scsi0"] = "ceph-pool:vm-100-disk-0,size=50G"
    pve.add_ceph_storage()
    pve.ceph_slow(secs)


def run_two(env: HubEnv, **extra: str) -> list[tuple[int, str, str]]:
    procs = [env.spawn("checkpoint", "create", "--json", **extra) for _ in range(2)]
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=120)
        out.append((proc.returncode, stdout, stderr))
    return out


def intervals(results: list[tuple[int, str, str]]) -> list[tuple[datetime, datetime]]:
    spans = []
    for code, stdout, _ in results:
        if code == 0:
            cp = json.loads(stdout)
            spans.append(
                (datetime.fromisoformat(cp["created_at"]), datetime.fromisoformat(cp["completed_at"]))
            )
    return sorted(spans)


@pytest.fixture(params=["file", "redis"])
def lock_env(request: pytest.FixtureRequest, sqlite_hubenv: HubEnv) -> HubEnv:
    if request.param == "redis":
        sqlite_hubenv.values["HUB_REDIS_URL"] = request.getfixturevalue("redis_url")
    return sqlite_hubenv


@pytest.mark.fakepve(time_scale=1.0)
def test_second_request_waits_its_turn(lock_env: HubEnv, pve: Any) -> None:
    slow_snapshots(pve, 1.5)
    results = run_two(lock_env, HUB_LOCK_WAIT_SECONDS="60")
    assert [r[0] for r in results] == [0, 0], [r[2] for r in results]
    (_, a_end), (b_start, _) = intervals(results)
    assert a_end <= b_start, "the two checkpoints overlapped"
    assert len(hub_snapshots(pve)) == 2
    tasks = sorted((t for t in pve.tasks.values() if t["type"] == "qmsnapshot"), key=lambda t: t["starttime"])
    assert tasks[0]["endtime"] <= tasks[1]["starttime"]


@pytest.mark.fakepve(time_scale=1.0)
def test_second_request_is_refused_when_it_cannot_wait(lock_env: HubEnv, pve: Any) -> None:
    slow_snapshots(pve, 8)  # long enough that a loaded machine still starts the second process in time
    first = lock_env.spawn("checkpoint", "create", "--json")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not any(t["type"] == "qmsnapshot" for t in pve.tasks.values()):
        time.sleep(0.05)
    second = lock_env.run("checkpoint", "create", HUB_LOCK_WAIT_SECONDS="0")
    assert second.returncode == 1
    assert "another operation holds" in one_line_error(second.stderr)
    _, stderr = first.communicate(timeout=60)
    assert first.returncode == 0, stderr
    assert len(hub_snapshots(pve)) == 1
    assert sum(1 for t in pve.tasks.values() if t["type"] == "qmsnapshot") == 1


def test_redis_configured_but_down_fails_closed(sqlite_hubenv: HubEnv, pve: Any) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    result = sqlite_hubenv.run("checkpoint", "create", HUB_REDIS_URL=f"redis://127.0.0.1:{port}/0")
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert "Redis" in line and "refusing" in line
    assert hub_snapshots(pve) == {}
    assert json.loads(sqlite_hubenv.run("checkpoint", "list", "--json").stdout)["checkpoints"] == []
