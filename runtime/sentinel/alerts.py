"""Alerts to people: Apprise (``HUB_ALERT_URLS``: email, ntfy, Gotify, Slack, Matrix, a webhook...).

Never in the way of recovery: ``send`` puts the alert on a queue and returns; one daemon thread
delivers, retrying with back-off (tenacity). The same (event, checkpoint, outcome) within
``dedup_seconds`` is sent once. At exit, ``close`` waits a bounded time for the queue, then leaves
the rest to the log (every alert is logged when queued, whatever becomes of its delivery).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from runtime.sentinel import metrics

log = logging.getLogger("hub.sentinel.alerts")


@dataclass(frozen=True, slots=True)
class Alert:
    event: str
    checkpoint: str | None
    outcome: str
    detail: str

    @property
    def key(self) -> tuple[str, str | None, str]:
        return (self.event, self.checkpoint, self.outcome)

    def title(self) -> str:
        return f"Hub recovery: {self.event} -> {self.outcome}"

    def body(self) -> str:
        lines = [f"event: {self.event}", f"checkpoint: {self.checkpoint or '-'}", f"outcome: {self.outcome}"]
        return "\n".join([*lines, self.detail])


Deliver = Callable[[Alert], bool]


def apprise_delivery(urls: str) -> Deliver:
    """Delivery through Apprise to ``urls`` (Apprise's own syntax; several separated by spaces or commas)."""
    import apprise  # only when alerts are configured

    target = apprise.Apprise()
    if not target.add(urls):  # pyright: ignore[reportUnknownMemberType]
        raise ValueError("HUB_ALERT_URLS: Apprise recognised none of the URLs")

    def deliver(alert: Alert) -> bool:
        return bool(target.notify(title=alert.title(), body=alert.body()))  # pyright: ignore[reportUnknownMemberType]

    return deliver


class Alerter:
    def __init__(
        self,
        deliver: Deliver | None,
        *,
        attempts: int = 3,
        backoff_seconds: float = 2.0,
        dedup_seconds: float = 3600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._deliver = deliver
        self._attempts = attempts
        self._backoff = backoff_seconds
        self._dedup = dedup_seconds
        self._clock = clock
        self._sent: dict[tuple[str, str | None, str], float] = {}
        self._queue: queue.Queue[Alert | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> bool:
        """Queue ``alert``; False when it repeats one sent within the dedup window. Never blocks."""
        now = self._clock()
        with self._lock:
            last = self._sent.get(alert.key)
            if last is not None and now - last < self._dedup:
                metrics.ALERTS.labels(outcome="deduplicated").inc()
                return False
            self._sent[alert.key] = now
        log.warning(
            "ALERT %s | checkpoint %s | %s | %s",
            alert.event,
            alert.checkpoint or "-",
            alert.outcome,
            alert.detail,
        )
        if self._deliver is None:
            metrics.ALERTS.labels(outcome="logged").inc()
            return True
        self._start()
        self._queue.put(alert)
        return True

    def close(self, *, wait_seconds: float = 10.0) -> None:
        """Let queued alerts go out for at most ``wait_seconds``; a hung endpoint cannot hold exit."""
        if self._thread is None:
            return
        self._queue.put(None)
        self._thread.join(timeout=wait_seconds)

    def _start(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sentinel-alerts", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        from tenacity import (
            Retrying,
            retry_if_exception_type,
            retry_if_result,
            stop_after_attempt,
            wait_exponential,
        )

        retrying = Retrying(
            stop=stop_after_attempt(self._attempts),
            wait=wait_exponential(multiplier=self._backoff, max=60),
            retry=retry_if_result(lambda ok: ok is not True) | retry_if_exception_type(Exception),
            retry_error_callback=lambda _state: False,
        )
        while True:
            alert = self._queue.get()
            if alert is None:
                return
            assert self._deliver is not None
            delivered = bool(retrying(self._deliver, alert))
            metrics.ALERTS.labels(outcome="delivered" if delivered else "failed").inc()
            if not delivered:
                log.error("alert %s not delivered after %d attempts", alert.event, self._attempts)
