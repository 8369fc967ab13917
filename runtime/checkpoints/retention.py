"""Which checkpoints to keep: Proxmox Backup Server's prune semantics, on UTC time buckets.

The rules, applied in this order to the VM's completed Hub checkpoints, newest first:

- ``keep-last N``: the N newest.
- ``keep-hourly N``: the newest checkpoint of each of the N most recent hours that have one.
- ``keep-daily N``, ``keep-weekly N`` (ISO weeks), ``keep-monthly N``: likewise per day, week, month.

A bucket already covered by a checkpoint that an earlier rule kept is skipped by the later rule
(it never keeps a second checkpoint of that day), and each rule's count only counts the buckets it
newly covers: ``keep-last 1`` + ``keep-daily 1`` with one checkpoint today and one yesterday keeps
both (today's by keep-last, yesterday's by keep-daily), exactly as PBS does.

``keep-within-days N`` (not a PBS option; how long checkpoints taken before an operation stay)
additionally keeps every checkpoint younger than N days that no rule above kept: with ``keep-last 3``
that is "two weeks, and never fewer than the 3 newest".

Everything no rule keeps is pruned. Protected checkpoints are never pruned and do not use up any
rule's count. Across all pools of a VM, ``guard_blessed`` then keeps the newest blessed checkpoint
(``newest-blessed``) and the newest blessed one at least 7 days old (``newest-blessed-7d``): the
recovery ladder's last rungs (issue 10) must survive any policy.

If every ``keep-*`` is 0 nothing is pruned at all (PBS's "keep all"), so a blank policy can never
empty the VM's history.

This is a pure function of its input; ``CheckpointService.prune`` applies it. It is the algorithm of
``compute_prune_info`` in proxmox-backup (pbs-datastore/src/prune.rs), transcribed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    keep_last: int = 0
    keep_hourly: int = 0
    keep_daily: int = 0
    keep_weekly: int = 0
    keep_monthly: int = 0
    keep_within_days: int = 0

    @property
    def keeps_all(self) -> bool:
        return not any(
            (
                self.keep_last,
                self.keep_hourly,
                self.keep_daily,
                self.keep_weekly,
                self.keep_monthly,
                self.keep_within_days,
            )
        )


@dataclass(frozen=True, slots=True)
class Candidate:
    id: str
    at: datetime
    protected: bool = False


@dataclass(frozen=True, slots=True)
class Decision:
    id: str
    at: datetime
    keep: bool
    reason: str  # the rule that kept it ("keep-daily"), "protected", or "pruned"


def _bucket(fmt: str) -> Callable[[Candidate], str]:
    return lambda c: c.at.astimezone(UTC).strftime(fmt)


_RULES: tuple[tuple[str, Callable[[Candidate], str]], ...] = (
    ("keep-last", lambda c: c.id),
    ("keep-hourly", _bucket("%Y/%m/%d/%H")),
    ("keep-daily", _bucket("%Y/%m/%d")),
    ("keep-weekly", _bucket("%G/%V")),
    ("keep-monthly", _bucket("%Y/%m")),
)


def decide(
    candidates: Sequence[Candidate], policy: RetentionPolicy, *, now: datetime | None = None
) -> list[Decision]:
    """One decision per candidate, newest first."""
    ordered = sorted(candidates, key=lambda c: (c.at, c.id), reverse=True)
    if policy.keeps_all:
        return [Decision(c.id, c.at, True, "keep-all (no keep-* option set)") for c in ordered]
    marks: dict[str, str] = {}  # id -> rule that kept it, or "protected" / "pruned"
    counts = (
        policy.keep_last,
        policy.keep_hourly,
        policy.keep_daily,
        policy.keep_weekly,
        policy.keep_monthly,
    )
    for (rule, select), keep in zip(_RULES, counts, strict=True):
        if keep <= 0:
            continue
        _mark(marks, ordered, keep, rule, select)
    if policy.keep_within_days > 0:
        since = (now or datetime.now(UTC)) - timedelta(days=policy.keep_within_days)
        for c in ordered:
            if c.at >= since and not c.protected and marks.get(c.id) in (None, "pruned"):
                marks[c.id] = "keep-within"
    decisions: list[Decision] = []
    for c in ordered:
        mark = marks.get(c.id)
        if c.protected:
            mark = "protected"
        decisions.append(Decision(c.id, c.at, mark not in (None, "pruned"), mark or "pruned"))
    return decisions


def _mark(
    marks: dict[str, str],
    ordered: Sequence[Candidate],
    keep: int,
    rule: str,
    select: Callable[[Candidate], str],
) -> None:
    already = {select(c) for c in ordered if marks.get(c.id) not in (None, "pruned", "protected")}
    included: set[str] = set()
    for c in ordered:
        if c.id in marks:
            continue
        if c.protected:
            marks[c.id] = "protected"
            continue
        bucket = select(c)
        if bucket in already:
            continue
        if bucket not in included:
            if len(included) >= keep:
                break
            included.add(bucket)
            marks[c.id] = rule
        else:
            marks[c.id] = "pruned"


NEWEST_BLESSED = "newest-blessed"
OLD_BLESSED = "newest-blessed-7d"
OLD_BLESSED_AGE = timedelta(days=7)


def guard_blessed(decisions: Sequence[Decision], *, blessed: Sequence[str], now: datetime) -> list[Decision]:
    """Keep the newest blessed checkpoint and the newest blessed one at least 7 days old, whatever
    the policy decided; a decision changed here names the guard as its rule. ``blessed``: the ids
    of the blessed candidates among ``decisions``."""
    ours = sorted((d for d in decisions if d.id in set(blessed)), key=lambda d: (d.at, d.id), reverse=True)
    guards: dict[str, str] = {}
    old = next((d for d in ours if d.at <= now - OLD_BLESSED_AGE), None)
    if old is not None:
        guards[old.id] = OLD_BLESSED
    if ours:
        guards.setdefault(ours[0].id, NEWEST_BLESSED)
    return [
        Decision(d.id, d.at, True, guards[d.id]) if d.id in guards and not d.keep else d for d in decisions
    ]
