"""Prometheus metrics, and the health loop's latest document.

The health loop (``runtime/serve.py``) evaluates health every interval and stores the document
here; the API serves the stored one, so a scrape or a sentinel probe never waits on Proxmox.
"""

from __future__ import annotations

import threading
from typing import Any

from prometheus_client import CollectorRegistry, Gauge
from sqlalchemy import func, select

from runtime.db import Checkpoint
from runtime.health import ORDER, evaluate
from runtime.wiring import Services


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.health = Gauge(
            "hub_health_status", "Overall health: 0 healthy, 1 degraded, 2 critical", registry=self.registry
        )
        self.check = Gauge(
            "hub_health_check_status", "Per-check health (0/1/2)", ["check"], registry=self.registry
        )
        self.checkpoints = Gauge(
            "hub_checkpoints", "Checkpoints by status", ["status"], registry=self.registry
        )
        self.last_completed = Gauge(
            "hub_last_checkpoint_completed_timestamp_seconds",
            "When the newest completed checkpoint finished",
            registry=self.registry,
        )
        self._lock = threading.Lock()
        self._latest: dict[str, Any] | None = None

    def refresh(self, services: Services) -> dict[str, Any]:
        doc = evaluate(services)
        self.health.set(ORDER[doc["status"]])
        for check in doc["checks"]:
            self.check.labels(check=check["name"]).set(ORDER[check["status"]])
        try:
            with services.db.session() as s:
                for status, count in s.execute(
                    select(Checkpoint.status, func.count()).group_by(Checkpoint.status)
                ):
                    self.checkpoints.labels(status=status).set(count)
                last = s.scalar(
                    select(func.max(Checkpoint.completed_at)).where(Checkpoint.status == "completed")
                )
            if last is not None:
                self.last_completed.set(last.timestamp())
        except Exception:
            pass
        with self._lock:
            self._latest = doc
        return doc

    def latest_health(self, services: Services) -> dict[str, Any]:
        with self._lock:
            doc = self._latest
        return doc if doc is not None else self.refresh(services)
