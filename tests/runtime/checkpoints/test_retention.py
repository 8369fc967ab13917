"""Retention with PBS prune semantics, on a clock the test controls."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.checkpoints.errors import CheckpointError
from runtime.checkpoints.records import CheckpointKind
from runtime.checkpoints.retention import Candidate, RetentionPolicy, decide
from tests.support.hubenv import HubEnv, hub_snapshots

T0 = datetime(2026, 11, 28, 0, 0, tzinfo=UTC)  # a Saturday
SCHEDULED = CheckpointKind.SCHEDULED  # the kind the HUB_KEEP_* policy applies to


def kept(cands: list[Candidate], policy: RetentionPolicy) -> list[str]:
    return [d.id for d in decide(cands, policy) if d.keep]


def daily(n: int, *, hour: int = 0) -> list[Candidate]:
    return [Candidate(id=f"d{i}", at=T0 - timedelta(days=i) + timedelta(hours=hour)) for i in range(n)]


def test_keep_last() -> None:
    assert kept(daily(5), RetentionPolicy(keep_last=2)) == ["d0", "d1"]


def test_keep_daily_keeps_the_newest_of_each_day() -> None:
    cands = [
        Candidate(id=f"{d}-{h}", at=T0 - timedelta(days=d) + timedelta(hours=h))
        for d in range(4)
        for h in (1, 5, 9)
    ]
    assert kept(cands, RetentionPolicy(keep_daily=3)) == ["0-9", "1-9", "2-9"]


def test_rules_share_buckets_as_pbs_does() -> None:
    # keep-last 1 keeps today's newest; keep-daily 2 skips today (covered) and keeps two more days.
    cands = [
        Candidate(id=f"{d}-{h}", at=T0 - timedelta(days=d) + timedelta(hours=h))
        for d in range(3)
        for h in (1, 2)
    ]
    assert kept(cands, RetentionPolicy(keep_last=1, keep_daily=2)) == ["0-2", "1-2", "2-2"]


def test_weekly_uses_iso_weeks_and_monthly_calendar_months() -> None:
    cands = daily(70)
    weekly = kept(cands, RetentionPolicy(keep_weekly=3))
    # T0 is Saturday of ISO week 48: newest of weeks 48, 47, 46 are that Saturday, then Sundays.
    assert weekly == ["d0", "d6", "d13"]
    monthly = kept(cands, RetentionPolicy(keep_monthly=3))
    assert monthly == ["d0", "d28", "d59"]  # Nov 28, Oct 31, Sep 30


def test_keep_hourly() -> None:
    cands = [Candidate(id=f"m{m}", at=T0 + timedelta(minutes=m)) for m in range(0, 180, 20)]
    assert kept(cands, RetentionPolicy(keep_hourly=2)) == ["m160", "m100"]


def test_protected_is_never_pruned_and_uses_no_slot() -> None:
    cands = daily(4)
    cands[0] = Candidate(id="d0", at=cands[0].at, protected=True)
    decisions = {d.id: d for d in decide(cands, RetentionPolicy(keep_last=1))}
    assert decisions["d0"].keep and decisions["d0"].reason == "protected"
    assert decisions["d1"].keep and decisions["d1"].reason == "keep-last"
    assert not decisions["d2"].keep and not decisions["d3"].keep


def test_no_option_set_keeps_everything() -> None:
    assert len(kept(daily(10), RetentionPolicy())) == 10


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def test_prune_applies_the_policy_to_proxmox(hubenv: HubEnv, pve: Any) -> None:
    clock = Clock(T0 - timedelta(days=9))
    svc = hubenv.checkpoints(keep_last=2, keep_hourly=0, keep_daily=4, keep_weekly=0, keep_monthly=0)
    svc.clock = clock
    made = []
    for _ in range(10):  # one checkpoint a day for 10 days, two on the last day
        made.append(svc.create(kind=SCHEDULED, prune=False).to_public())
        clock.now += timedelta(days=1)
    clock.now -= timedelta(hours=12)
    made.append(svc.create(kind=SCHEDULED, prune=False).to_public())
    foreign = {"before-upgrade": {"snaptime": 1, "description": "by hand"}}
    pve.vm(100).snapshots.update(foreign)

    dry = hubenv.run(
        "checkpoint",
        "prune",
        "--dry-run",
        "--json",
        HUB_KEEP_LAST="2",
        HUB_KEEP_DAILY="4",
        HUB_KEEP_WEEKLY="0",
        HUB_KEEP_MONTHLY="0",
    )
    plan = json.loads(dry.stdout)
    # keep-last: the two newest (both on the last day); keep-daily 4 skips that covered day and keeps
    # the newest of the four days before it (PBS counts only the buckets a rule newly covers).
    survivors = {m["uuid"] for m in made[-6:]}
    assert {p["uuid"] for p in plan["pruned"]} == {m["uuid"] for m in made} - survivors
    assert len(hub_snapshots(pve)) == 11  # dry run touched nothing

    svc.prune()
    remaining = {r.uuid for r in hubenv.queries().list() if r.status == "completed"}
    assert remaining == survivors
    assert set(hub_snapshots(pve)) == {m["snapname"] for m in made if m["uuid"] in survivors}
    assert "before-upgrade" in pve.vm(100).snapshots


def test_retention_runs_after_success_only_and_spares_protected(sqlite_hubenv: HubEnv, pve: Any) -> None:
    svc = sqlite_hubenv.checkpoints(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    first = svc.create(kind=SCHEDULED).to_public()
    result = sqlite_hubenv.run("checkpoint", "protect", first["uuid"], "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["protected"] is True
    second = svc.create(kind=SCHEDULED).to_public()
    pve.fail("POST", "/nodes/pve1/qemu/100/snapshot", error="snapshot_feature_not_available")
    with pytest.raises(CheckpointError):
        svc.create(kind=SCHEDULED)  # failed: must not prune anything
    assert set(hub_snapshots(pve)) == {first["snapname"], second["snapname"]}
    pve.failures.clear()
    third = svc.create(
        kind=SCHEDULED
    ).to_public()  # succeeded: keep-last 1 keeps it, protected first survives
    assert set(hub_snapshots(pve)) == {first["snapname"], third["snapname"]}
    # Protection is recorded on Proxmox too, so it survives a rollback of the database.
    assert "hub-protected: yes" in pve.vm(100).snapshots[first["snapname"]]["description"]
    refused = sqlite_hubenv.run("checkpoint", "delete", first["uuid"])
    assert refused.returncode == 2 and "protected" in refused.stderr
