"""When scheduled checkpoints happen: APScheduler's cron trigger, in UTC.

Production defaults to ``0 0 * * *`` (daily at 00:00 UTC); other environments to ``manual`` (no
scheduled checkpoints). The live firing is APScheduler's ``BackgroundScheduler`` with coalescing
and one instance at a time, so a slow checkpoint never overlaps the next.

Catch-up after downtime: on start, if the trigger had a fire time between the last scheduled
checkpoint we know of and now, exactly one checkpoint runs at once, however many fire times were
missed. The database is the memory here (not a pickled job store), because it already records every
scheduled checkpoint and survives restarts and rollbacks.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Protocol, cast

from sqlalchemy import func, select

from runtime.checkpoints.records import CheckpointKind
from runtime.db import Checkpoint, Database
from runtime.heartbeats import Heartbeats
from runtime.settings import Settings

# APScheduler is imported where it is used: `hubctl health` asks this module whether a checkpoint is
# due, and with the `manual` schedule (the default outside production) it never needs a trigger;
# loading APScheduler's schedulers, executors and tzlocal cost ~20-30 ms of its start-up (issue 9).
if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler  # pyright: ignore[reportMissingTypeStubs]
    from apscheduler.triggers.base import BaseTrigger  # pyright: ignore[reportMissingTypeStubs]
    from apscheduler.triggers.cron import CronTrigger  # pyright: ignore[reportMissingTypeStubs]

log = logging.getLogger(__name__)
JOB_ID = "scheduled-checkpoint"
BEAT = "scheduler"


def trigger_for(settings: Settings) -> CronTrigger | None:
    expr = settings.effective_schedule
    if expr == "manual":
        return None
    from apscheduler.triggers.cron import CronTrigger  # pyright: ignore[reportMissingTypeStubs]

    return CronTrigger.from_crontab(expr, timezone=UTC)  # pyright: ignore[reportUnknownMemberType]


def next_fire(settings: Settings, *, after: datetime) -> datetime | None:
    trigger = trigger_for(settings)
    if trigger is None:
        return None
    return next_fire_of(trigger, after=after)


def next_fire_of(trigger: BaseTrigger, *, after: datetime) -> datetime | None:
    # APScheduler answers "at or after"; we want strictly after (a run at 00:00:00 is not still due).
    probe = after + timedelta(microseconds=1)
    fire = cast(datetime | None, trigger.get_next_fire_time(None, probe))  # pyright: ignore[reportUnknownMemberType]
    return fire.astimezone(UTC) if fire else None


def last_scheduled(db: Database, vmid: int) -> datetime | None:
    with db.session() as s:
        return s.scalar(
            select(func.max(Checkpoint.created_at)).where(
                Checkpoint.vm_id == vmid, Checkpoint.kind == CheckpointKind.SCHEDULED.value
            )
        )


def catch_up_due(settings: Settings, *, last: datetime | None, now: datetime) -> bool:
    """True when a fire time passed since ``last`` without a scheduled checkpoint (one run covers all).

    With no scheduled checkpoint on record there is nothing to catch up on: the first one happens at
    the next fire time, as configured.
    """
    trigger = trigger_for(settings)
    return trigger is not None and missed(trigger, last=last, now=now)


def missed(trigger: BaseTrigger, *, last: datetime | None, now: datetime) -> bool:
    """True when ``trigger`` had a fire time after ``last`` and at or before ``now``; False without a
    ``last`` (nothing on record: nothing to catch up on)."""
    if last is None:
        return False
    fire = next_fire_of(trigger, after=last)
    return fire is not None and fire <= now


class SchedulerPart(Protocol):
    """More timed work on the same scheduler (e.g. projects' fleet checkpoints, runtime.fleet.schedules):
    one APScheduler, so the leader runs one scheduler and health watches one heartbeat."""

    def install(self, scheduler: BackgroundScheduler) -> None: ...


class CheckpointScheduler:
    """Runs ``job`` at each fire time of the checkpoint schedule, plus one catch-up run at start,
    and whatever ``parts`` install (they run even when the Hub's own schedule is ``manual``)."""

    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        vmid: int | None,
        job: Callable[[], object],
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        trigger: BaseTrigger | None = None,
        heartbeats: Heartbeats | None = None,
        parts: Sequence[SchedulerPart] = (),
    ) -> None:
        self.settings = settings
        self.db = db
        # The VM whose scheduled checkpoints decide whether a run was missed; None (no Hub VM, e.g.
        # HUB_VMID unset) runs only the parts.
        self.vmid = vmid
        self.job = job
        self.clock = clock
        # The lab passes an accelerated trigger; everything else uses the configured schedule.
        self._trigger = trigger
        from apscheduler.schedulers.background import (  # pyright: ignore[reportMissingTypeStubs]
            BackgroundScheduler,
        )

        self._scheduler = BackgroundScheduler(timezone=UTC)
        self.heartbeats = heartbeats
        self.parts = tuple(parts)

    @property
    def enabled(self) -> bool:
        return (self._trigger or trigger_for(self.settings)) is not None

    def start(self) -> bool:
        """Start firing; returns whether a catch-up run was due (it is started in the background)."""
        trigger = self._trigger or trigger_for(self.settings)
        vmid = self.vmid
        if vmid is None:
            trigger = None
        if trigger is None and not self.parts:
            return False
        due = False
        if trigger is not None and vmid is not None:
            due = catch_up_due(self.settings, last=last_scheduled(self.db, vmid), now=self.clock())
            self._scheduler.add_job(  # pyright: ignore[reportUnknownMemberType]
                self._run, trigger, id=JOB_ID, coalesce=True, max_instances=1, misfire_grace_time=3600
            )
        for part in self.parts:
            part.install(self._scheduler)
        if due:
            log.info("a scheduled checkpoint was missed while the Hub was down: catching up once")
            self._scheduler.add_job(self._run, id=JOB_ID + "-catch-up")  # pyright: ignore[reportUnknownMemberType]
        if self.heartbeats is not None:
            # Beats through the scheduler's own executor: a dead or wedged scheduler stops beating.
            every = self.settings.health_heartbeat_seconds
            self._beat()
            self._scheduler.add_job(  # pyright: ignore[reportUnknownMemberType]
                self._beat,
                "interval",
                seconds=every,
                id=JOB_ID + "-heartbeat",
                coalesce=True,
                max_instances=1,
            )
        self._scheduler.start()  # pyright: ignore[reportUnknownMemberType]
        return due

    def _beat(self) -> None:
        if self.heartbeats is not None:
            self.heartbeats.beat(BEAT, role="scheduler", every=self.settings.health_heartbeat_seconds)

    def next_run(self) -> datetime | None:
        job = cast(object, self._scheduler.get_job(JOB_ID))  # pyright: ignore[reportUnknownMemberType]
        when = cast(datetime | None, getattr(job, "next_run_time", None))
        return when.astimezone(UTC) if when else None

    def shutdown(self, *, wait: bool = True) -> None:
        if self.heartbeats is not None:
            self.heartbeats.forget(BEAT)
        if self._scheduler.running:
            self._scheduler.shutdown(wait=wait)  # pyright: ignore[reportUnknownMemberType]

    def _run(self) -> None:
        try:
            self.job()
        except Exception:  # the scheduler must survive a failed checkpoint; the row and audit say why
            log.exception("scheduled checkpoint failed")
