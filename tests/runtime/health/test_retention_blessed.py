"""Retention never removes the newest blessed checkpoint nor the newest blessed one at least 7 days
old, whatever the policy; the dry run names the guard that kept each."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.checkpoints.retention import (
    NEWEST_BLESSED,
    OLD_BLESSED,
    Decision,
    guard_blessed,
)
from runtime.db import Checkpoint
from tests.support.hubenv import HUB_VMID, HubEnv, hub_snapshots

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def d(id_: str, days: float, keep: bool = False, reason: str = "pruned") -> Decision:
    return Decision(id_, NOW - timedelta(days=days), keep, reason)


def test_guard_blessed() -> None:
    decisions = [d("new", 0, True, "keep-last"), d("b2", 2), d("b8", 8), d("b10", 10), d("x", 20)]
    out = {x.id: (x.keep, x.reason) for x in guard_blessed(decisions, blessed=["b2", "b8", "b10"], now=NOW)}
    assert out == {
        "new": (True, "keep-last"),
        "b2": (True, NEWEST_BLESSED),
        "b8": (True, OLD_BLESSED),
        "b10": (False, "pruned"),
        "x": (False, "pruned"),
    }


def test_a_blessed_checkpoint_kept_by_a_rule_keeps_its_rule() -> None:
    decisions = [d("b1", 1, True, "keep-daily"), d("b9", 9)]
    out = {x.id: x.reason for x in guard_blessed(decisions, blessed=["b1", "b9"], now=NOW)}
    assert out == {"b1": "keep-daily", "b9": OLD_BLESSED}


def test_one_blessed_checkpoint_a_week_old_is_both() -> None:
    out = guard_blessed([d("b", 8)], blessed=["b"], now=NOW)
    assert out == [Decision("b", NOW - timedelta(days=8), True, OLD_BLESSED)]


def test_no_blessed_checkpoint_changes_nothing() -> None:
    decisions = [d("a", 1), d("b", 9)]
    assert guard_blessed(decisions, blessed=[], now=NOW) == decisions


def test_prune_keeps_the_newest_blessed_and_the_week_old_blessed(sqlite_hubenv: HubEnv, pve: Any) -> None:
    retention = {"HUB_RETENTION": json.dumps({"manual": {"keep_last": 1}})}
    sqlite_hubenv.values.update(retention)
    svc = sqlite_hubenv.checkpoints()
    made = [svc.create(prune=False) for _ in range(4)]
    now = datetime.now(UTC)
    ages = {made[0].uuid: 10, made[1].uuid: 8, made[2].uuid: 2, made[3].uuid: 0.01}
    with sqlite_hubenv.services().db.session() as s:
        for uuid, days in ages.items():
            row = s.get_one(Checkpoint, uuid)
            row.created_at = now - timedelta(days=days)
            if uuid != made[3].uuid:
                row.blessed_at = row.created_at + timedelta(hours=1)

    dry = sqlite_hubenv.run("checkpoint", "prune", "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    doc = json.loads(dry.stdout)
    assert [c["uuid"] for c in doc["pruned"]] == [made[0].uuid]
    rules = {c["uuid"]: c["rule"] for c in doc["kept"]}
    assert rules == {made[3].uuid: "keep-last", made[2].uuid: NEWEST_BLESSED, made[1].uuid: OLD_BLESSED}
    assert "newest-blessed-7d" in sqlite_hubenv.run("checkpoint", "prune", "--dry-run").stdout

    gone = sqlite_hubenv.checkpoints().prune(vmid=HUB_VMID)
    assert [item.checkpoint.uuid for item in gone] == [made[0].uuid]
    assert set(hub_snapshots(pve)) == {m.snapname for m in made[1:]}
