"""The durable side of jobs: one row per job, written only through these functions.

The queue carries nothing but the job id. Claiming is a compare-and-set (``queued`` -> ``running``)
so a message delivered twice (Redis redelivery after a worker died, or the re-enqueue at start) runs
the job at most once. Every change of a job's state is written in the same transaction as its audit
entry: the trail never says a job ended that did not, nor misses one that did.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, func, select, update

from runtime import audit
from runtime.db import Database, Job, JobState
from runtime.db.models import new_uuid
from runtime.errors import NotFoundError

MAX_PROGRESS_LINES = 200


class JobStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(self, *, kind: str, params: dict[str, Any], actor: str) -> dict[str, Any]:
        """Write the job as queued, with its audit entry, in one transaction."""
        with self.db.session() as s:
            job = Job(
                id=new_uuid(),
                kind=kind,
                params=params,
                state=JobState.QUEUED.value,
                actor=actor,
                progress=[],
                created_at=datetime.now(UTC),
            )
            s.add(job)
            s.flush()
            audit.record(
                s,
                actor=actor,
                action="job.submit",
                target=job.id,
                outcome="queued",
                details={"kind": kind, "params": params},
            )
            return job.to_public()

    def claim(self, job_id: str, *, worker_id: str | None = None) -> dict[str, Any] | None:
        """Move the job from queued to running, recording which worker runs it; None if someone else
        already did (or it is done)."""
        with self.db.session() as s:
            result = cast(
                CursorResult[Any],
                s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.state == JobState.QUEUED.value)
                    .values(state=JobState.RUNNING.value, started_at=datetime.now(UTC), worker_id=worker_id)
                ),
            )
            if not result.rowcount:
                return None
            return s.get_one(Job, job_id).to_public()

    def progress(self, job_id: str, message: str) -> None:
        with self.db.session() as s:
            job = s.get_one(Job, job_id)
            job.progress = [*job.progress, message][-MAX_PROGRESS_LINES:]

    def finish(
        self,
        job_id: str,
        *,
        result: dict[str, Any] | None = None,
        error: str | None = None,
        audit_details: dict[str, Any] | None = None,
    ) -> None:
        """The job's final state and its audit entry, in one transaction."""
        with self.db.session() as s:
            job = s.get_one(Job, job_id)
            failed = error is not None
            job.state = JobState.FAILED.value if failed else JobState.SUCCEEDED.value
            job.result = result
            job.error = error
            job.finished_at = datetime.now(UTC)
            audit.record(
                s,
                actor=job.actor,
                action=f"job.{job.kind}",
                target=job.id,
                outcome="failed" if failed else "succeeded",
                details=audit_details if audit_details is not None else ({"error": error} if failed else {}),
            )

    def get(self, job_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            job = s.get(Job, job_id)
            if job is None:
                raise NotFoundError(f"no job with id {job_id}")
            return job.to_public()

    def page(
        self, *, state: JobState | None = None, limit: int = 50, offset: int = 0
    ) -> tuple[list[dict[str, Any]], int]:
        with self.db.session() as s:
            query = select(Job)
            count = select(func.count()).select_from(Job)
            if state is not None:
                query = query.where(Job.state == state.value)
                count = count.where(Job.state == state.value)
            rows = s.scalars(query.order_by(Job.created_at.desc(), Job.id).limit(limit).offset(offset))
            return [j.to_public() for j in rows], int(s.scalar(count) or 0)

    def last_submitted(self, kind: str, *, actor: str, param: tuple[str, str]) -> datetime | None:
        """When the newest job of ``kind`` by ``actor`` whose params have ``param`` (key, text value)
        was submitted; None if there is none. Jobs are kept, so this is the submitter's memory (the
        projects' scheduler asks it whether a fire time was missed: runtime/fleet/schedules.py)."""
        key, value = param
        query = select(func.max(Job.created_at)).where(
            Job.kind == kind, Job.actor == actor, Job.params[key].as_string() == value
        )
        with self.db.session() as s:
            return s.scalar(query)

    def queued_ids(self, *, older_than: timedelta | None = None) -> list[str]:
        """Jobs still queued, oldest first (only those queued longer than ``older_than``, if given)."""
        query = select(Job.id).where(Job.state == JobState.QUEUED.value)
        if older_than is not None:
            query = query.where(Job.created_at < datetime.now(UTC) - older_than)
        with self.db.session() as s:
            return list(s.scalars(query.order_by(Job.created_at)))

    def fail_interrupted(
        self, *, alive: Callable[[], set[str]], keep: frozenset[str] = frozenset()
    ) -> list[str]:
        """Jobs left 'running' by a worker that is gone: failed, with what is true about them, and
        audited. Gone means not in ``alive()`` (the workers whose heartbeat is fresh; see
        runtime/jobs/workers.py), or no worker recorded at all; ``keep`` (this process's own running
        jobs) is never touched. Their effects on Proxmox are settled by reconcile. The update is
        conditional, so a job that finished meanwhile keeps its outcome.

        The running jobs are read before the live workers: a worker registers before it claims, so
        a job claimed between the two reads names a worker the second read sees."""
        with self.db.session() as s:
            running = list(
                s.execute(select(Job.id, Job.worker_id).where(Job.state == JobState.RUNNING.value))
            )
        if not running:
            return []
        live = alive()
        candidates = [
            job_id
            for job_id, worker_id in running
            if job_id not in keep and (worker_id is None or worker_id not in live)
        ]
        done: list[str] = []
        for job_id in candidates:
            with self.db.session() as s:
                changed = cast(
                    CursorResult[Any],
                    s.execute(
                        update(Job)
                        .where(Job.id == job_id, Job.state == JobState.RUNNING.value)
                        .values(state=JobState.FAILED.value, error=INTERRUPTED, finished_at=datetime.now(UTC))
                    ),
                )
                if not changed.rowcount:
                    continue
                job = s.get_one(Job, job_id)
                audit.record(
                    s,
                    actor="service",
                    action=f"job.{job.kind}",
                    target=job.id,
                    outcome="failed",
                    details={"error": INTERRUPTED},
                )
                done.append(job_id)
        return done


# What is true of a job whose worker went away: Proxmox may have done its part; reconcile decides.
INTERRUPTED = "interrupted: the process running it stopped; its checkpoint (if any) is left to reconcile"
