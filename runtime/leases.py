"""Leases: a role that exactly one process may hold at a time, in the database every process shares.

``hubctl serve`` runs the scheduler, the health loop and the periodic reconcile (with its sweep of
jobs whose worker died): run twice on one database they would take every scheduled checkpoint twice.
Several ``serve`` processes may share a database (scale-out, and ``--api-processes``), so those
loops run under the ``leader`` lease (``Leadership``): every serve process is a candidate, the one
that takes the lease starts the loops and renews it every third of its TTL, the others try again at
the same pace. A holder that dies stops renewing and its lease lapses after its TTL (at once when
it was a process on this host that provably died: ``runtime.locks.holder_alive``), and the next
candidate takes it. A holder that cannot renew for a whole TTL (the database away) stops its loops,
since another process may by then hold the lease; it stays a candidate.

The lease lives in the database rather than in Redis because the database is what two leaders would
corrupt, it is there on the embedded default too (where Redis is not), and its clock of record is
one place: a leader that cannot reach the database cannot do the leader's work anyway. Taking it is
one conditional UPDATE (or an INSERT when the row does not exist yet): the database's own row
locking decides between two processes starting at the same instant.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, delete, update
from sqlalchemy.exc import IntegrityError

from runtime.db import Database, Lease
from runtime.errors import HubError, OperationError
from runtime.locks import holder_alive, holder_token

log = logging.getLogger(__name__)


class LeaseHeld(OperationError):
    """Another live process holds the lease."""


class DbLease:
    def __init__(self, db: Database, name: str, *, ttl: float, holder: str | None = None) -> None:
        self.db = db
        self.name = name
        self.ttl = ttl
        self.holder = holder or holder_token()
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> None:
        """Take the lease, or raise LeaseHeld naming the live holder."""
        now = datetime.now(UTC)
        expires = now + timedelta(seconds=self.ttl)
        with self.db.session() as s:
            result = cast(
                CursorResult[Any],
                s.execute(
                    update(Lease)
                    .where(Lease.name == self.name, (Lease.expires_at < now) | (Lease.holder == self.holder))
                    .values(holder=self.holder, acquired_at=now, expires_at=expires)
                ),
            )
            if result.rowcount:
                return
        try:
            with self.db.session() as s:
                s.add(Lease(name=self.name, holder=self.holder, acquired_at=now, expires_at=expires))
            return
        except IntegrityError:
            pass
        with self.db.session() as s:
            current = s.get(Lease, self.name)
            who = current.holder if current else "another process"
            until = current.expires_at.isoformat() if current else "?"
            # A holder on this machine that provably died (killed, or the container restarted) frees it
            # at once instead of after its TTL; compare-and-set, so only one successor takes it.
            if current is not None and not holder_alive(current.holder):
                taken = cast(
                    CursorResult[Any],
                    s.execute(
                        update(Lease)
                        .where(Lease.name == self.name, Lease.holder == current.holder)
                        .values(holder=self.holder, acquired_at=now, expires_at=expires)
                    ),
                )
                if taken.rowcount:
                    log.warning("took over the %s lease from %s, which is gone", self.name, who)
                    return
        raise LeaseHeld(
            f"another process ({who}) holds the {self.name} lease on this database (until {until}, "
            "renewed while it runs)"
        )

    def holder_now(self) -> str | None:
        """Who holds the lease now (None when nobody does)."""
        with self.db.session() as s:
            current = s.get(Lease, self.name)
            if current is None or current.expires_at < datetime.now(UTC):
                return None
            return current.holder

    def renew(self) -> bool:
        """Extend our lease; False when it is no longer ours (it lapsed and someone took it)."""
        now = datetime.now(UTC)
        with self.db.session() as s:
            result = cast(
                CursorResult[Any],
                s.execute(
                    update(Lease)
                    .where(Lease.name == self.name, Lease.holder == self.holder)
                    .values(expires_at=now + timedelta(seconds=self.ttl))
                ),
            )
            return bool(result.rowcount)

    def keep_renewed(self, *, every: float, on_lost: Any = None) -> None:
        """Renew in a background thread until ``release``. A renewal that fails because the database
        is briefly away is retried at the next tick (the TTL is several ticks long)."""

        def loop() -> None:
            while not self._stop.wait(every):
                try:
                    if not self.renew():
                        log.error("the %s lease was lost to another process", self.name)
                        if on_lost is not None:
                            on_lost()
                        return
                except HubError as exc:
                    log.warning("could not renew the %s lease (will retry): %s", self.name, exc)

        self._renewer = threading.Thread(target=loop, name=f"lease-{self.name}", daemon=True)
        self._renewer.start()

    def release(self) -> None:
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        try:
            with self.db.session() as s:
                s.execute(delete(Lease).where(Lease.name == self.name, Lease.holder == self.holder))
        except HubError as exc:  # it lapses by itself after its TTL
            log.warning("could not release the %s lease: %s", self.name, exc)


class Leadership:
    """Be a candidate for ``lease``: ``on_gain`` when it is taken, ``on_loss`` when it is lost.

    One thread tries to take the lease (or renews it, when held) every ``ttl / 3``. The callbacks
    run on that thread, so they must be quick (start or stop threads, not do the work): a slow one
    would delay the renewal past the TTL."""

    def __init__(self, lease: DbLease, *, on_gain: Callable[[], None], on_loss: Callable[[], None]) -> None:
        self.lease = lease
        self.on_gain = on_gain
        self.on_loss = on_loss
        self.every = lease.ttl / 3
        self.leading = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._renewed = 0.0

    def start(self) -> None:
        """Try once now (so a lone process leads from its start), then keep trying in a thread."""
        self._tick()
        self._thread = threading.Thread(target=self._run, name=f"leader-{self.lease.name}", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop being a candidate; hand the lease back at once when held (the next one need not wait
        for its TTL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self.leading:
            self._lose()
            self.lease.release()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self._tick()

    def _tick(self) -> None:
        try:
            if not self.leading:
                self.lease.acquire()
                self._renewed = time.monotonic()
                self.leading = True
                log.info("took the %s lease (%s)", self.lease.name, self.lease.holder)
                self.on_gain()
            elif self.lease.renew():
                self._renewed = time.monotonic()
            else:
                log.error(
                    "the %s lease was taken by another process: stopping its work here", self.lease.name
                )
                self._lose()
        except LeaseHeld:
            pass
        except HubError as exc:
            log.warning("%s lease: %s (will retry)", self.lease.name, exc)
            if self.leading and time.monotonic() - self._renewed > self.lease.ttl:
                log.error(
                    "could not renew the %s lease for its whole TTL: stopping its work here", self.lease.name
                )
                self._lose()
        except Exception:  # a callback's bug must not end the candidacy
            log.exception("%s lease: unexpected failure", self.lease.name)

    def _lose(self) -> None:
        self.leading = False
        try:
            self.on_loss()
        except Exception:
            log.exception("stopping the %s lease's work failed", self.lease.name)
