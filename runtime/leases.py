"""Leases: a role that exactly one process may hold at a time, in the database every process shares.

``hubctl serve`` runs the scheduler, the periodic reconcile and the sweep of orphaned jobs: run
twice on one database they would take every scheduled checkpoint twice and mark each other's running
jobs interrupted. So the service takes the ``service`` lease at start and renews it while it runs; a
second one finds it held and refuses to start, naming the holder. A holder that dies stops renewing,
and its lease lapses after its TTL, so a restarted service is never locked out for long.

The lease lives in the database rather than in Redis because the database is what the two
processes would corrupt, and it is there on the embedded default too. Taking it is one conditional
UPDATE (or an INSERT when the row does not exist yet): the database's own row locking decides
between two processes starting at the same instant.
"""

from __future__ import annotations

import logging
import threading
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
            f"another hubctl serve ({who}) holds the {self.name} lease on this database (until "
            f"{until}, renewed while it runs); refusing to start a second one"
        )

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
