"""Retention per label (cv4pve-autosnap's --label/--keep habit, PBS's keep-* rules inside each label),
time-kept pre-operation checkpoints, a dry run that says what stays and why, and RAM-state snapshots."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from runtime.checkpoints.records import CheckpointKind
from tests.support.hubenv import HUB_VMID, HubEnv, hub_snapshots, make_env

SCHEDULED_KEEP_ONE = {"keep_last": 1, "keep_hourly": 0, "keep_daily": 0, "keep_weekly": 0, "keep_monthly": 0}


def test_scheduled_runs_never_prune_a_manual_checkpoint(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """The defect: one keep-last pool for all kinds let the next scheduled run prune the manual
    checkpoint taken before a risky change."""
    svc = sqlite_hubenv.checkpoints(**SCHEDULED_KEEP_ONE)
    manual = svc.create(kind=CheckpointKind.MANUAL, reason="before the risky change")
    scheduled = [svc.create(kind=CheckpointKind.SCHEDULED) for _ in range(3)]
    assert manual.snapname in hub_snapshots(pve)
    assert set(hub_snapshots(pve)) == {manual.snapname, scheduled[-1].snapname}


def test_pre_operation_checkpoints_are_kept_for_their_time(sqlite_hubenv: HubEnv, pve: Any) -> None:
    svc = sqlite_hubenv.checkpoints(**SCHEDULED_KEEP_ONE)
    now = datetime.now(UTC)
    svc.clock = lambda: now - timedelta(days=20)
    old = [svc.create(kind=CheckpointKind.PRE_OPERATION, prune=False) for _ in range(5)]
    svc.clock = lambda: now - timedelta(days=2)
    recent = [svc.create(kind=CheckpointKind.PRE_OPERATION, prune=False) for _ in range(4)]
    svc.clock = lambda: now
    plan = {item.checkpoint.uuid: item for item in svc.plan(HUB_VMID)}
    # Two weeks, and never fewer than the 3 newest: the 3 newest by keep-last, the rest by keep-within.
    assert sorted(plan[c.uuid].rule for c in recent) == ["keep-last"] * 3 + ["keep-within"]
    assert [plan[c.uuid].keep for c in old] == [False] * 5
    svc.prune()
    assert set(hub_snapshots(pve)) == {c.snapname for c in recent}


def test_a_custom_label_with_its_own_policy_and_a_dry_run_that_says_why(sqlite_hubenv: HubEnv) -> None:
    env = sqlite_hubenv
    retention = json.dumps({"daily": {"keep_last": 2}})
    for _ in range(3):  # taken under the default for a new label (its 10 newest)
        made = env.run("checkpoint", "create", "--label", "daily", "--json")
        assert made.returncode == 0, made.stderr
        assert json.loads(made.stdout)["label"] == "daily"
    env.run("checkpoint", "create", "--json")  # a manual one: its own pool
    dry = env.run("checkpoint", "prune", "--dry-run", "--json", HUB_RETENTION=retention)
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert [(p["label"], p["rule"]) for p in doc["pruned"]] == [("daily", "pruned")]
    assert sorted((k["label"], k["rule"]) for k in doc["kept"]) == [
        ("daily", "keep-last"),
        ("daily", "keep-last"),
        ("manual", "keep-last"),
    ]
    assert doc["policies"]["daily"]["keep_last"] == 2
    text = env.run("checkpoint", "prune", "--dry-run", HUB_RETENTION=retention).stdout
    assert "would prune 1 checkpoint(s)" in text and "daily: keep-last" in text
    bad = env.run("checkpoint", "list", HUB_RETENTION=json.dumps({"Daily!": {"keep_last": 1}}))
    assert bad.returncode == 2 and "HUB_RETENTION" in bad.stderr


def test_labels_survive_a_database_rollback(
    sqlite_hubenv: HubEnv, pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    made = json.loads(sqlite_hubenv.run("checkpoint", "create", "--label", "before-upgrade", "--json").stdout)
    fresh = make_env(pve, fakepve_cafile, tmp_path, f"sqlite:///{tmp_path / 'fresh.db'}")
    assert fresh.run("reconcile").returncode == 0
    [back] = json.loads(fresh.run("checkpoint", "list", "--json").stdout)["checkpoints"]
    assert back["uuid"] == made["uuid"] and back["label"] == "before-upgrade"


def test_a_checkpoint_with_ram_state(sqlite_hubenv: HubEnv, pve: Any) -> None:
    result = sqlite_hubenv.run("checkpoint", "create", "--vmstate", "--json")
    assert result.returncode == 0, result.stderr
    cp = json.loads(result.stdout)
    assert cp["vmstate"] is True
    snap = hub_snapshots(pve)[cp["snapname"]]
    assert snap.get("vmstate")
    posted = [body for m, p, body in pve.requests if m == "POST" and p.endswith("/snapshot")]
    assert any(b"vmstate=1" in bytes(body) for body in posted)
