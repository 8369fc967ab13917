"""The service's health loop: evaluate, settle (hysteresis), record, bless, publish.

Every ``health_interval_seconds``: one instantaneous evaluation (``checks.evaluate``), fed to the
hysteresis trackers (overall and per check, ``tracker.py``); the result is the health document,
written to the history (``history.py``, pruned after ``health_history_days``), used to bless the
checkpoints whose window has passed (``blessing.py``), and handed to the sink (the service's
metrics, which serve it at ``/api/v1/health`` and ``/readyz`` and export its gauges).

The document: ``status`` is the settled verdict (what ``/readyz`` answers and the sentinel acts on);
``instant`` and ``settled`` each carry a status and since when; each check carries its instantaneous
``status`` and its own ``settled`` one.

Any one step failing (the database down while it is being evaluated) is logged and the loop goes on:
it must outlive every fault it is there to report. ``run_health_loop`` is the one entry point the
service calls (in a thread of its own); it takes everything it needs as arguments.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from runtime.errors import HubError
from runtime.health import history
from runtime.health.checks import evaluate
from runtime.health.history import max_gap
from runtime.health.tracker import Hysteresis, Verdict
from runtime.settings import Settings
from runtime.wiring import Services

log = logging.getLogger("hub.health")
PRUNE_EVERY = timedelta(minutes=10)
Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


class HealthSink(Protocol):
    """Where each document goes (``runtime.metrics.Metrics``). Must not raise."""

    def publish_health(self, services: Services, doc: dict[str, Any]) -> None: ...


class HealthLoop:
    def __init__(
        self,
        services: Services,
        *,
        settings: Settings,
        sink: HealthSink | None = None,
        evaluator: Callable[[datetime], dict[str, Any]] | None = None,
        clock: Clock = _utcnow,
    ) -> None:
        self.services = services
        self.settings = settings
        self.sink = sink
        # Tests give a controlled evaluator; the service evaluates the real checks.
        self.evaluator: Callable[[datetime], dict[str, Any]] = evaluator or self._evaluate
        self.clock = clock
        self.overall = self._tracker()
        self.per_check: dict[str, Hysteresis] = {}
        # Blessing writes to Proxmox: its client is loaded with the loop, not for `hubctl health`.
        from runtime.health.blessing import Blesser

        self.blesser = Blesser(services)
        self._pruned_at: datetime | None = None
        self._seeded = False

    def _evaluate(self, now: datetime) -> dict[str, Any]:
        return evaluate(self.services, now=now)

    def _tracker(self) -> Hysteresis:
        return Hysteresis(
            critical_after=self.settings.health_critical_after,
            healthy_after=self.settings.health_healthy_after,
        )

    def tick(self) -> dict[str, Any]:
        now = self.clock()
        if not self._seeded:
            self._seed(now)
        raw = self.evaluator(now)
        settled = self.overall.observe(raw["status"], now)
        assert self.overall.instant is not None
        checks: list[dict[str, Any]] = []
        for check in raw["checks"]:
            tracker = self.per_check.setdefault(check["name"], self._tracker())
            checks.append({**check, "settled": tracker.observe(check["status"], now).status})
        doc: dict[str, Any] = {
            "status": settled.status,
            "instant": self.overall.instant.to_public(),
            "settled": settled.to_public(),
            "checks": checks,
            "at": now.isoformat(),
        }
        self._step("record history", lambda: self._record(doc, now))
        self._step("bless checkpoints", lambda: self.blesser.run(now=now))
        if self.sink is not None:
            self.sink.publish_health(self.services, doc)
        return doc

    def _seed(self, now: datetime) -> None:
        """Continue the verdict a previous process settled, if it is recent (a restart is not a cure)."""
        self._seeded = True
        try:
            last = history.latest(self.services.ready_db(), before=now)
        except HubError as exc:
            log.warning("health history unreadable, starting without a verdict: %s", exc)
            return
        if last is not None and (now - last.at).total_seconds() <= max_gap(self.settings):
            self.overall.seed(Verdict(last.settled, last.at))

    def _record(self, doc: dict[str, Any], now: datetime) -> None:
        db = self.services.ready_db()
        history.record(
            db, at=now, instant=doc["instant"]["status"], settled=doc["status"], checks=doc["checks"]
        )
        if self._pruned_at is None or now - self._pruned_at >= PRUNE_EVERY:
            gone = history.prune(db, before=now - timedelta(days=self.settings.health_history_days))
            self._pruned_at = now
            if gone:
                log.info(
                    "pruned %d health evaluation(s) older than %d days",
                    gone,
                    self.settings.health_history_days,
                )

    def _step(self, name: str, step: Callable[[], object]) -> None:
        try:
            step()
        except HubError as exc:
            log.warning("health loop: %s failed: %s", name, exc)
        except Exception:  # the loop must outlive any single failed step
            log.exception("health loop: %s failed", name)


def one_shot(services: Services, *, now: datetime | None = None) -> dict[str, Any]:
    """One evaluation outside the loop (``hubctl health``, or before the loop's first tick): its
    ``status`` is this evaluation's; ``settled`` is the service's latest verdict from the history
    when it is recent, else null."""
    now = now or _utcnow()
    doc = evaluate(services, now=now)
    doc["instant"] = {"status": doc["status"], "since": now.isoformat()}
    doc["settled"] = None
    try:
        last = history.latest(services.ready_db(), before=now)
    except HubError:
        last = None
    if last is not None and (now - last.at).total_seconds() <= max_gap(services.settings):
        doc["settled"] = {"status": last.settled, "since": last.at.isoformat()}
    return doc


def run_health_loop(
    services: Services, metrics: HealthSink, settings: Settings, stop: threading.Event
) -> None:
    """The service's health loop, until ``stop`` is set (run it in a thread of its own)."""
    loop = HealthLoop(services, settings=settings, sink=metrics)
    while not stop.is_set():
        try:
            loop.tick()
        except Exception:  # the loop must outlive any single failed evaluation
            log.exception("health evaluation failed")
        stop.wait(settings.health_interval_seconds)
