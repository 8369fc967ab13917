"""Hysteresis: from a series of instantaneous evaluations to the settled verdict the sentinel acts on.

One slow Proxmox answer or one database hiccup must not roll the Hub back, and one good answer
must not declare a sick Hub well. So the settled verdict moves only on streaks:

- it turns ``critical`` after ``critical_after`` (N) consecutive critical evaluations;
- it turns ``healthy`` after ``healthy_after`` (M) consecutive healthy evaluations;
- otherwise a healthy settled verdict becomes ``degraded`` at the first evaluation that is not
  healthy (something is wrong, not yet proven critical), and a critical one stays critical until M
  consecutive evaluations are not critical (then ``healthy`` if all M were healthy, else
  ``degraded``), so alternating critical/degraded answers cannot flap it.
- The first evaluation with no verdict to continue settles at once when it is healthy or degraded;
  a first critical one settles as ``degraded`` until the streak reaches N. A restarted service
  continues the verdict of its recent history (``seed``), so a restart does not clear a critical Hub.

The tracker is a pure state machine: it is given each evaluation's status and time, never reads a
clock. The same machine runs for the overall verdict and for each check (the per-check gauges).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Verdict:
    status: str
    since: datetime

    def to_public(self) -> dict[str, str]:
        return {"status": self.status, "since": self.since.isoformat()}


class Hysteresis:
    def __init__(self, *, critical_after: int, healthy_after: int) -> None:
        if critical_after < 1 or healthy_after < 1:
            raise ValueError("streak lengths start at 1")
        self.critical_after = critical_after
        self.healthy_after = healthy_after
        self.settled: Verdict | None = None
        self.instant: Verdict | None = None
        self._criticals = 0  # consecutive critical evaluations, up to now
        self._healthies = 0  # consecutive healthy evaluations
        self._not_critical = 0  # consecutive evaluations that were not critical

    def seed(self, settled: Verdict) -> None:
        """Continue a verdict settled before (the service restarted): no streak carries over."""
        self.settled = settled

    def observe(self, status: str, at: datetime) -> Verdict:
        if self.instant is None or self.instant.status != status:
            self.instant = Verdict(status, at)
        self._criticals = self._criticals + 1 if status == "critical" else 0
        self._healthies = self._healthies + 1 if status == "healthy" else 0
        self._not_critical = self._not_critical + 1 if status != "critical" else 0
        self._settle(self._next(status), at)
        assert self.settled is not None
        return self.settled

    def _next(self, status: str) -> str:
        current = self.settled.status if self.settled is not None else None
        if self._criticals >= self.critical_after:
            return "critical"
        if self._healthies >= self.healthy_after:
            return "healthy"
        if current is None:
            return "degraded" if status == "critical" else status
        if current == "critical":
            if self._not_critical >= self.healthy_after:
                return "healthy" if self._healthies >= self.healthy_after else "degraded"
            return "critical"
        if current == "healthy" and status != "healthy":
            return "degraded"
        return current

    def _settle(self, status: str, at: datetime) -> None:
        if self.settled is None or self.settled.status != status:
            self.settled = Verdict(status, at)
