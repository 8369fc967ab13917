"""Blessing: which of the Hub's checkpoints are proven good, for the recovery ladder to prefer.

A completed checkpoint of the Hub VM is *blessed* once the Hub stayed healthy for
``bless_window_seconds`` after it completed: every evaluation in the health history from just
before it was taken to the end of the window has a healthy instantaneous AND a healthy settled
verdict, and the history has no hole longer than ``max_gap`` (a Hub nobody watched proved nothing).
It is refused for good, with the reason recorded on the row, when:

- it was taken while the Hub was not healthy (the last evaluation before it was taken, or one while
  it was being taken, was degraded or critical): a snapshot of a sick Hub is no rescue;
- an evaluation within the window was not healthy;
- the history has a hole longer than ``max_gap`` in that span (the service was down or wedged).

Otherwise it waits. The decision (``judge``) is a pure function of the checkpoint's times, the
clock and the history; ``Blesser`` applies it: the blessing goes onto the snapshot's description
first (``CheckpointService.bless``, under the VM lock), so a Hub whose database is rolled back, and
the sentinel outside the VM, read it from Proxmox alone; reconcile restores it into the row.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from runtime.checkpoints.records import CheckpointStatus
from runtime.checkpoints.service import CheckpointService
from runtime.db import Checkpoint
from runtime.errors import HubError
from runtime.health import history
from runtime.health.history import Sample, max_gap
from runtime.wiring import Services

log = logging.getLogger("hub.health.blessing")
# Blessing is housekeeping: it never waits long for a VM lock a checkpoint holds; it retries next tick.
LOCK_WAIT = 2.0


@dataclass(frozen=True, slots=True)
class Judgement:
    outcome: str  # "bless", "refuse" or "wait"
    why: str


def judge(
    *,
    created_at: datetime,
    completed_at: datetime,
    now: datetime,
    window: float,
    gap: float,
    samples: Sequence[Sample],
) -> Judgement:
    """``samples``: the history from ``created_at - gap`` on, oldest first."""
    end_of_window = completed_at + timedelta(seconds=window)
    ordered = sorted(samples, key=lambda s: s.at)
    before = [s for s in ordered if s.at <= created_at]
    taking = before[-1:] + [s for s in ordered if created_at < s.at <= completed_at]
    for s in taking:
        bad = _unhealthy(s)
        if bad:
            return Judgement("refuse", f"taken while the Hub was {bad} (evaluation at {s.at.isoformat()})")
    for s in ordered:
        if completed_at < s.at <= end_of_window:
            bad = _unhealthy(s)
            if bad:
                return Judgement(
                    "refuse", f"the Hub was {bad} at {s.at.isoformat()}, within {window:g}s of the checkpoint"
                )
    end = min(now, end_of_window)
    points = [created_at] + [s.at for s in ordered if created_at < s.at <= end]
    for a, b in itertools.pairwise(points):
        if (b - a).total_seconds() > gap:
            return Judgement(
                "refuse", f"health not observed for {(b - a).total_seconds():.0f}s from {a.isoformat()}"
            )
    silent = (end - points[-1]).total_seconds()
    if silent > gap:
        return Judgement("refuse", f"health not observed for {silent:.0f}s from {points[-1].isoformat()}")
    if now < end_of_window:
        return Judgement("wait", f"healthy so far; the window ends at {end_of_window.isoformat()}")
    return Judgement("bless", f"healthy for {window:g}s after it completed")


def _unhealthy(sample: Sample) -> str | None:
    if sample.instant != "healthy":
        return sample.instant
    if sample.settled != "healthy":
        return f"{sample.settled} (settled)"
    return None


class Blesser:
    """Decides every undecided completed checkpoint of the Hub VM, one at a time: one that cannot be
    decided now (the VM locked, Proxmox away) is left for the next tick and the rest go on."""

    def __init__(self, services: Services, *, actor: str = "health") -> None:
        self.services = services
        self.settings = services.settings
        self.actor = actor

    def run(self, *, now: datetime) -> dict[str, str]:
        """uuid -> what happened to it ("blessed", "refused: why"), for checkpoints decided now."""
        vmid = self.settings.vmid
        if vmid is None:
            return {}
        db = self.services.ready_db()
        with db.session() as s:
            rows = [
                (r.uuid, r.created_at, r.completed_at or r.created_at)
                for r in s.scalars(
                    select(Checkpoint).where(
                        Checkpoint.vm_id == vmid,
                        Checkpoint.status == CheckpointStatus.COMPLETED.value,
                        Checkpoint.blessed_at.is_(None),
                        Checkpoint.bless_refused.is_(None),
                    )
                )
            ]
        decided: dict[str, str] = {}
        gap = max_gap(self.settings)
        service: CheckpointService | None = None
        for uuid, created_at, completed_at in rows:
            samples = history.samples(
                db,
                since=created_at - timedelta(seconds=gap),
                until=completed_at + timedelta(seconds=self.settings.bless_window_seconds),
            )
            verdict = judge(
                created_at=created_at,
                completed_at=completed_at,
                now=now,
                window=self.settings.bless_window_seconds,
                gap=gap,
                samples=samples,
            )
            if verdict.outcome == "wait":
                continue
            try:
                service = service or CheckpointService.build(self.services, actor=self.actor)
                if verdict.outcome == "bless":
                    service.bless(uuid, at=now, why=verdict.why, lock_wait=LOCK_WAIT)
                    decided[uuid] = "blessed"
                    log.info("checkpoint %s blessed: %s", uuid, verdict.why, extra={"checkpoint": uuid})
                else:
                    service.refuse_blessing(uuid, why=verdict.why, at=now)
                    decided[uuid] = f"refused: {verdict.why}"
                    log.info(
                        "checkpoint %s will not be blessed: %s", uuid, verdict.why, extra={"checkpoint": uuid}
                    )
            except HubError as exc:
                log.warning(
                    "blessing %s left for the next evaluation: %s", uuid, exc, extra={"checkpoint": uuid}
                )
        return decided
