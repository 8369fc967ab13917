"""Hysteresis: the settled verdict moves only on streaks (N critical, M healthy), driven by an
evaluator the test controls; the document carries both verdicts and since when; the history is
written and pruned; a restarted loop continues a recent verdict."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from runtime.health import history
from runtime.health.loop import HealthLoop
from runtime.health.tracker import Hysteresis
from runtime.wiring import Services
from tests.support.hubenv import HubEnv

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
STEP = timedelta(seconds=30)


def run(statuses: str, *, n: int = 3, m: int = 3) -> list[str]:
    """Settled verdicts after each instantaneous one (h, d, c)."""
    names = {"h": "healthy", "d": "degraded", "c": "critical"}
    tracker = Hysteresis(critical_after=n, healthy_after=m)
    out: list[str] = []
    for i, s in enumerate(statuses):
        out.append(tracker.observe(names[s], T0 + i * STEP).status[0])
    return out


@pytest.mark.parametrize(
    ("instant", "settled"),
    [
        ("hhh", "hhh"),  # a first healthy evaluation settles at once
        ("ccc", "ddc"),  # a first critical one is degraded until the third
        ("hhcch", "hhddd"),  # two criticals are not enough; a healthy breaks the streak
        ("hhccc", "hhddc"),  # the third consecutive critical settles critical
        ("hhcccdcdcd", "hhdd" + "c" * 6),  # alternating critical/degraded cannot flap it out
        ("hhccchhh", "hhddccch"),  # M=3 healthy ones to turn healthy again
        ("hhcccddd", "hhddcccd"),  # M=3 non-critical ones, not all healthy: degraded
        ("hhdh", "hhdd"),  # healthy -> degraded at once, needs M healthy back
        ("hhdhhh", "hhdddh"),
    ],
)
def test_transitions(instant: str, settled: str) -> None:
    assert "".join(run(instant)) == settled


def test_streak_lengths_are_settings() -> None:
    assert "".join(run("hcc", n=2)) == "hdc"
    assert "".join(run("hccchh", n=2, m=2)) == "hdccch"
    assert "".join(run("hc", n=1)) == "hc"


def test_since_moves_only_when_the_verdict_changes() -> None:
    tracker = Hysteresis(critical_after=2, healthy_after=2)
    tracker.observe("healthy", T0)
    tracker.observe("healthy", T0 + STEP)
    assert tracker.settled is not None and tracker.settled.since == T0
    tracker.observe("critical", T0 + 2 * STEP)
    tracker.observe("critical", T0 + 3 * STEP)
    assert tracker.settled.status == "critical" and tracker.settled.since == T0 + 3 * STEP
    assert tracker.instant is not None and tracker.instant.since == T0 + 2 * STEP


class Scripted:
    """An evaluator the test drives: each call answers the next status, with one check."""

    def __init__(self) -> None:
        self.next = "healthy"

    def __call__(self, now: datetime) -> dict[str, Any]:
        return {
            "status": self.next,
            "checks": [{"name": "probe", "status": self.next, "detail": f"scripted {self.next}"}],
            "at": now.isoformat(),
        }


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, delta: timedelta = STEP) -> None:
        self.now += delta


class Sink:
    def __init__(self) -> None:
        self.docs: list[dict[str, Any]] = []

    def publish_health(self, services: Services, doc: dict[str, Any]) -> None:
        self.docs.append(doc)


@pytest.fixture
def services(hubenv: HubEnv) -> Iterator[Services]:
    services = hubenv.services()
    yield services
    services.close()


def make_loop(services: Services, clock: Clock, evaluator: Scripted, sink: Sink | None = None) -> HealthLoop:
    return HealthLoop(services, settings=services.settings, sink=sink, evaluator=evaluator, clock=clock)


def test_the_loop_settles_records_and_publishes(services: Services) -> None:
    clock, script, sink = Clock(T0), Scripted(), Sink()
    loop = make_loop(services, clock, script, sink)
    loop.tick()
    script.next = "critical"
    for _ in range(2):
        clock.advance()
        doc = loop.tick()
        assert doc["status"] == "degraded" and doc["instant"]["status"] == "critical"
    clock.advance()
    doc = loop.tick()
    assert doc["status"] == "critical"
    assert doc["settled"] == {"status": "critical", "since": clock.now.isoformat()}
    assert doc["instant"] == {"status": "critical", "since": (T0 + STEP).isoformat()}
    assert doc["checks"] == [
        {"name": "probe", "status": "critical", "detail": "scripted critical", "settled": "critical"}
    ]
    assert sink.docs[-1] is doc and len(sink.docs) == 4
    rows = history.samples(services.db, since=T0)
    assert [(r.instant, r.settled) for r in rows] == [
        ("healthy", "healthy"),
        ("critical", "degraded"),
        ("critical", "degraded"),
        ("critical", "critical"),
    ]


def test_a_restarted_loop_continues_a_recent_verdict(services: Services) -> None:
    clock, script = Clock(T0), Scripted()
    first = make_loop(services, clock, script)
    script.next = "critical"
    for _ in range(3):
        first.tick()
        clock.advance()
    # A new process, one interval later: one healthy answer does not clear the critical verdict.
    script.next = "healthy"
    second = make_loop(services, clock, script)
    assert second.tick()["status"] == "critical"
    # Long after (the history is stale), a new loop starts without a verdict.
    clock.advance(timedelta(hours=1))
    third = make_loop(services, clock, script)
    assert third.tick()["status"] == "healthy"


def test_history_is_pruned_after_its_age(hubenv: HubEnv) -> None:
    services = hubenv.services(health_history_days=2)
    old = T0 - timedelta(days=3)
    for i in range(5):
        history.record(services.db, at=old + i * STEP, instant="healthy", settled="healthy", checks=[])
    history.record(services.db, at=T0 - timedelta(days=1), instant="degraded", settled="healthy", checks=[])
    assert history.count(services.db) == 6
    loop = make_loop(services, Clock(T0), Scripted())
    loop.tick()
    kept = history.samples(services.db, since=T0 - timedelta(days=30))
    assert [r.at for r in kept] == [T0 - timedelta(days=1), T0]
    services.close()


def test_a_failing_history_write_does_not_stop_the_loop(services: Services) -> None:
    clock, script, sink = Clock(T0), Scripted(), Sink()
    loop = make_loop(services, clock, script, sink)
    loop.tick()
    services.db.dispose()
    broken = services.settings.model_copy(update={"database_url": "sqlite:////nonexistent/dir/hub.db"})
    loop.services = Services(broken)
    clock.advance()
    doc = loop.tick()  # the write fails (logged); the verdict is still published
    assert doc["status"] == "healthy" and sink.docs[-1] is doc
