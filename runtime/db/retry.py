"""Outcome writes that survive a short database outage.

A restart of PostgreSQL (or a failover) takes seconds; an operation whose Proxmox side already
happened must not lose its outcome to it. The writes that record an outcome (a checkpoint completed,
a job finished) are retried on ``DatabaseError`` for a bounded time with jittered back-off. If the
database is still away after that, the caller leaves the row for reconcile, which rebuilds it from
Proxmox, and says so. Only whole transactions are retried: a session rolled back by the failure is
started afresh, so a retry never writes half of one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

from tenacity import Retrying, retry_if_exception_type, stop_after_delay, wait_exponential_jitter

from runtime.errors import DatabaseError

T = TypeVar("T")
log = logging.getLogger(__name__)
# Long enough for a PostgreSQL restart; short enough that a job's outcome is not held for minutes.
OUTCOME_WRITE_SECONDS = 30.0


def retry_write(write: Callable[[], T], *, budget: float = OUTCOME_WRITE_SECONDS) -> T:
    """Run ``write`` (one whole transaction), retrying it while the database is unreachable."""

    def note(state: object) -> None:
        log.warning("database unavailable; retrying an outcome write")

    retrying = Retrying(
        retry=retry_if_exception_type(DatabaseError),
        stop=stop_after_delay(budget),
        wait=wait_exponential_jitter(multiplier=0.2, max=3.0),
        before_sleep=note,
        reraise=True,
    )
    return retrying(write)
