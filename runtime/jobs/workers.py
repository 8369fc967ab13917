"""The worker registry: which processes run jobs, and which of them are still alive.

Every process that runs jobs (``hubctl serve``, ``hubctl worker``) writes a row at start and
refreshes its ``heartbeat_at`` every ``worker_heartbeat_seconds`` from a thread of its own. A job it
claims records its id (store.claim). A running job is marked interrupted only when its worker is
dead, which is one of:

- its heartbeat is older than ``worker_stale_seconds`` (the process, its host or its network is
  gone: the only evidence another host has);
- its row names a process on this host that no longer exists (``runtime.locks.holder_alive``: pid
  and start time), so a restarted single-process Hub settles the previous process's jobs at once
  instead of a stale-interval later;
- it has no row at all (cleaned up, or a job claimed before this registry existed).

Never while its heartbeat is fresh: a slow job on a live worker is left alone however long it runs.
A worker whose row was removed while it was only paused (a database outage longer than the stale
interval) writes it again at its next heartbeat; the jobs it was running were already settled as
interrupted, and their own end is recorded over that when they finish (the database records what
happened last).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select, update

from runtime.db import Database, Job, JobState, Worker
from runtime.errors import HubError
from runtime.locks import holder_alive, holder_token, is_this_process

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WorkerTiming:
    """How often a worker heartbeats, and how old a heartbeat may get before its worker is dead."""

    heartbeat: float
    stale_after: float


@dataclass(frozen=True, slots=True)
class LiveWorker:
    id: str
    host: str
    pid: int
    role: str
    here: bool  # this very process (its job threads are judged by runtime.heartbeats too)


@dataclass(frozen=True, slots=True)
class WorkerCensus:
    """Every registered job-running process, and the live ones among them (any host)."""

    registered: int
    live: tuple[LiveWorker, ...]


def census(db: Database, *, stale_after: float) -> WorkerCensus:
    """Live: heartbeat younger than ``stale_after`` and process not provably gone (as ``live_ids``).
    Health reads it, so a process without job threads of its own (``serve`` with
    ``HUB_WORKER_THREADS=0``, ``hubctl health``) still sees the workers in other processes."""
    cutoff = datetime.now(UTC) - timedelta(seconds=stale_after)
    with db.session() as s:
        rows = s.execute(
            select(Worker.id, Worker.host, Worker.pid, Worker.role, Worker.token, Worker.heartbeat_at)
        ).all()
    live = tuple(
        LiveWorker(id=wid, host=host, pid=pid, role=role, here=is_this_process(token))
        for wid, host, pid, role, token, beat in rows
        if beat >= cutoff and holder_alive(token)
    )
    return WorkerCensus(registered=len(rows), live=live)


class WorkerRegistry:
    def __init__(self, db: Database, *, role: str, timing: WorkerTiming) -> None:
        self.db = db
        self.role = role
        self.timing = timing
        self.id = str(uuid.uuid4())
        self.token = holder_token()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Told after every heartbeat written (``hubctl worker --alive-file``: a container health check).
        self.on_beat: Callable[[], None] | None = None

    # ------------------------------------------------------------- this one

    def register(self) -> None:
        now = datetime.now(UTC)
        with self.db.session() as s:
            s.merge(
                Worker(
                    id=self.id,
                    host=socket.gethostname()[:255],
                    pid=os.getpid(),
                    token=self.token,
                    role=self.role,
                    started_at=now,
                    heartbeat_at=now,
                )
            )

    def heartbeat(self) -> None:
        """Refresh our heartbeat; write the row again if a sweep removed it while we were away."""
        with self.db.session() as s:
            result = cast(
                CursorResult[Any],
                s.execute(update(Worker).where(Worker.id == self.id).values(heartbeat_at=datetime.now(UTC))),
            )
            if result.rowcount:
                return
        log.warning("worker %s was taken for dead (no heartbeat for a while): registering again", self.id)
        self.register()

    def start(self) -> None:
        """Register, then heartbeat from a thread until ``stop``. A heartbeat that fails (the
        database briefly away) is retried at the next tick: the stale interval is several ticks."""
        self.register()
        if self.on_beat is not None:
            self.on_beat()

        def beat() -> None:
            while not self._stop.wait(self.timing.heartbeat):
                try:
                    self.heartbeat()
                    if self.on_beat is not None:
                        self.on_beat()
                except HubError as exc:
                    log.warning("worker heartbeat failed (will retry): %s", exc)

        self._thread = threading.Thread(target=beat, name="worker-heartbeat", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop heartbeating and remove our row (after our jobs ended: nothing of ours is running)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            with self.db.session() as s:
                s.execute(delete(Worker).where(Worker.id == self.id))
        except HubError as exc:  # it goes stale by itself and is cleaned up by the leader
            log.warning("could not deregister worker %s: %s", self.id, exc)

    # ---------------------------------------------------------- every worker

    def live_ids(self) -> set[str]:
        """Workers whose heartbeat is fresh and whose process is not provably gone."""
        return {w.id for w in census(self.db, stale_after=self.timing.stale_after).live}

    def list(self) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [w.to_public() for w in s.scalars(select(Worker).order_by(Worker.started_at))]

    def remove_dead(self) -> list[str]:
        """Delete the rows of dead workers that no running job names any more (their jobs are
        settled first, by the sweep), so the table holds only the living and the not yet settled."""
        live = self.live_ids()
        with self.db.session() as s:
            busy = set(s.scalars(select(Job.worker_id).where(Job.state == JobState.RUNNING.value).distinct()))
            dead = [w for w in s.scalars(select(Worker.id)) if w not in live and w not in busy]
            if dead:
                s.execute(delete(Worker).where(Worker.id.in_(dead)))
        return dead
