"""Scheduled fleet checkpoints per project: each project's cron (UTC) on the leader's scheduler.

A project with a ``checkpoint_schedule`` (runtime/machines/projects.py, ``ProjectStore.schedules()``)
gets one APScheduler cron job on the same ``BackgroundScheduler`` as the Hub's own scheduled
checkpoint (runtime/checkpoints/schedule.py), so only the leader fires them and the scheduler's
heartbeat covers them. At each fire time it submits the job ``fleet.checkpoint`` with
``{"project": name, "kind": "scheduled"}``: the project's machines, each checkpointed by
``CheckpointService.create`` with the label ``scheduled``, whose retention is the project's rule
when it has one (``CheckpointService.plan`` looks it up per VM), else the ``scheduled`` policy.

Projects change while the service runs (``project create``/``set`` from any process, API or CLI),
so the jobs are not built once: ``sync`` re-reads the table every ``sync_seconds`` (one query) from
an interval job of the same scheduler, adding, rescheduling and removing cron jobs to match. A
schedule set is therefore live within a minute; a fire time that falls before that is not caught
up (there was no schedule to miss).

Coalescing and ``max_instances=1`` as for the Hub's own schedule: a missed fire time while the
scheduler was busy runs once. Catch-up after no Hub led (the service was down, or between one
leader and the next), as the Hub's own schedule has (runtime/checkpoints/schedule.py): when the
scheduler starts, a project whose cron had a fire time between its last scheduled run and now gets
exactly one run at once, however many were missed. The memory is the jobs table (``last_run``: the
newest ``fleet.checkpoint`` the scheduler submitted for the project; jobs are kept); a project
never run by the scheduler has nothing to catch up on. Only at start: a schedule set or changed
while the scheduler runs starts at its next fire time.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runtime.checkpoints.records import CheckpointKind
from runtime.checkpoints.schedule import missed
from runtime.errors import HubError
from runtime.machines.projects import ProjectStore

if TYPE_CHECKING:
    # APScheduler is the leader's, with Proxmox configured (runtime/serve.py builds the scheduler then):
    # a ``serve`` without Proxmox never loads it.
    from apscheduler.schedulers.background import BackgroundScheduler  # pyright: ignore[reportMissingTypeStubs]
    from apscheduler.triggers.cron import CronTrigger  # pyright: ignore[reportMissingTypeStubs]

log = logging.getLogger(__name__)
JOB_PREFIX = "project-checkpoint:"
SYNC_JOB_ID = "project-schedules-sync"
SYNC_SECONDS = 60.0
KIND = "fleet.checkpoint"

Submit = Callable[[str, dict[str, object]], object]
LastRun = Callable[[str], datetime | None]  # project -> when the scheduler last submitted its run


def fleet_params(project: str) -> dict[str, object]:
    """The job's parameters for one project's scheduled run (the label defaults to the kind)."""
    return {
        "project": project,
        "kind": CheckpointKind.SCHEDULED.value,
        "reason": f"schedule of project {project}",
    }


class ProjectSchedules:
    """Keeps one cron job per scheduled project on a scheduler; ``install`` is its SchedulerPart hook."""

    def __init__(
        self,
        *,
        projects: ProjectStore,
        submit: Submit,
        sync_seconds: float = SYNC_SECONDS,
        last_run: LastRun | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.projects = projects
        self.submit = submit
        self.sync_seconds = sync_seconds
        self.last_run = last_run  # None: no catch-up at start
        self.clock = clock
        self._scheduler: BackgroundScheduler | None = None
        self._crons: dict[str, str] = {}  # project -> the cron its job was built from

    def install(self, scheduler: BackgroundScheduler) -> None:
        self._scheduler = scheduler
        self.sync(catch_up=True)
        scheduler.add_job(  # pyright: ignore[reportUnknownMemberType]
            self.sync, "interval", seconds=self.sync_seconds, id=SYNC_JOB_ID, coalesce=True, max_instances=1
        )

    def sync(self, *, catch_up: bool = False) -> None:
        """Match the scheduler's jobs to the projects table. A database away keeps the jobs it has.

        ``catch_up`` (the first sync, as the scheduler starts): a project whose job is added and
        whose cron fired since its last run gets one run now."""
        scheduler = self._scheduler
        if scheduler is None:
            return
        from apscheduler.triggers.cron import CronTrigger  # pyright: ignore[reportMissingTypeStubs]

        try:
            wanted = dict(self.projects.schedules())
        except HubError as exc:
            log.warning("project schedules not re-read (kept as they were): %s", exc)
            return
        for name in [n for n in self._crons if n not in wanted]:
            scheduler.remove_job(JOB_PREFIX + name)  # pyright: ignore[reportUnknownMemberType]
            del self._crons[name]
            log.info("project %s: scheduled fleet checkpoints stopped", name)
        for name, cron in wanted.items():
            if self._crons.get(name) == cron:
                continue
            try:
                trigger = CronTrigger.from_crontab(cron, timezone=UTC)  # pyright: ignore[reportUnknownMemberType]
            except ValueError as exc:  # validated on write; a row edited by hand must not stop the rest
                log.warning("project %s: checkpoint schedule %r not usable: %s", name, cron, exc)
                continue
            scheduler.add_job(  # pyright: ignore[reportUnknownMemberType]
                self._fire,
                trigger,
                args=(name,),
                id=JOB_PREFIX + name,
                replace_existing=True,
                coalesce=True,
                max_instances=1,
                misfire_grace_time=3600,
            )
            self._crons[name] = cron
            log.info("project %s: scheduled fleet checkpoints at %r (UTC)", name, cron)
            if catch_up and self._missed(name, trigger):
                log.info("project %s: missed a scheduled checkpoint while no Hub led: run once now", name)
                scheduler.add_job(  # pyright: ignore[reportUnknownMemberType]
                    self._fire, args=(name,), id=f"{JOB_PREFIX}{name}-catch-up", replace_existing=True
                )

    def _missed(self, project: str, trigger: CronTrigger) -> bool:
        if self.last_run is None:
            return False
        try:
            last = self.last_run(project)
        except HubError as exc:  # a database away: the next fire time takes the next run
            log.warning("project %s: last scheduled run not read, no catch-up: %s", project, exc)
            return False
        return missed(trigger, last=last, now=self.clock())

    def scheduled(self) -> dict[str, str]:
        """Project -> cron of the jobs on the scheduler now."""
        return dict(self._crons)

    def _fire(self, project: str) -> None:
        try:
            self.submit(KIND, fleet_params(project))
        except Exception:  # the scheduler must survive; the next fire time tries again
            log.exception("scheduled fleet checkpoint of project %s not submitted", project)
