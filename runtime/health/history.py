"""The health history (``hub_health_history``): one row per evaluation of the service's loop.

Blessing reads it (was the Hub healthy through the window after a checkpoint?), a restarted
service continues its settled verdict from it, and an operator can see when the Hub was unwell. Rows
older than ``health_history_days`` are pruned by the loop; the settings refuse a history shorter than
the blessing window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, select

from runtime.db import Database, HealthSample
from runtime.settings import Settings


def max_gap(settings: Settings) -> float:
    """The longest hole in the history that still counts as watched: three intervals and a minute
    (an evaluation waits on Proxmox's timeouts). Blessing and a restarted loop both use it."""
    return 3 * settings.health_interval_seconds + 60.0


@dataclass(frozen=True, slots=True)
class Sample:
    at: datetime
    instant: str
    settled: str


def record(
    db: Database, *, at: datetime, instant: str, settled: str, checks: Sequence[dict[str, Any]]
) -> None:
    with db.session() as s:
        s.add(
            HealthSample(
                at=at,
                instant=instant,
                settled=settled,
                checks={c["name"]: c["status"] for c in checks},
                problems=[f"{c['name']}: {c['detail']}"[:500] for c in checks if c["status"] != "healthy"],
            )
        )


def prune(db: Database, *, before: datetime) -> int:
    with db.session() as s:
        result = s.execute(delete(HealthSample).where(HealthSample.at < before))
        return int(getattr(result, "rowcount", 0) or 0)


def samples(db: Database, *, since: datetime, until: datetime | None = None) -> list[Sample]:
    """Evaluations at or after ``since`` (and at or before ``until``), oldest first."""
    query = select(HealthSample.at, HealthSample.instant, HealthSample.settled).where(
        HealthSample.at >= since
    )
    if until is not None:
        query = query.where(HealthSample.at <= until)
    with db.session() as s:
        return [
            Sample(at, instant, settled)
            for at, instant, settled in s.execute(query.order_by(HealthSample.at))
        ]


def latest(db: Database, *, before: datetime | None = None) -> Sample | None:
    query = select(HealthSample.at, HealthSample.instant, HealthSample.settled)
    if before is not None:
        query = query.where(HealthSample.at <= before)
    with db.session() as s:
        row = s.execute(query.order_by(HealthSample.at.desc()).limit(1)).first()
    return None if row is None else Sample(row[0], row[1], row[2])


def count(db: Database) -> int:
    from sqlalchemy import func

    with db.session() as s:
        return int(s.scalar(select(func.count()).select_from(HealthSample)) or 0)
