"""``/readyz``: the settled verdict, without auth and without details; 200 unless critical, 503 when
critical (what the sentinel polls). ``/healthz`` stays liveness; the full document needs a token."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from runtime import domains
from runtime.api.app import create_app
from runtime.jobs.queue import JobQueue
from runtime.metrics import Metrics
from runtime.wiring import Services
from tests.support.hubenv import HubEnv


def document(settled: str, instant: str) -> dict[str, Any]:
    return {
        "status": settled,
        "instant": {"status": instant, "since": "2026-11-01T12:00:00+00:00"},
        "settled": {"status": settled, "since": "2026-11-01T11:00:00+00:00"},
        "checks": [{"name": "proxmox", "status": instant, "detail": "secret detail", "settled": settled}],
        "at": "2026-11-01T12:00:00+00:00",
    }


@pytest.fixture
def app(sqlite_hubenv: HubEnv) -> Iterator[tuple[TestClient, Metrics, Services]]:
    services = sqlite_hubenv.services()
    metrics = Metrics()
    queue = JobQueue(services, kinds=domains.job_kinds())
    with TestClient(create_app(services=services, queue=queue, metrics=metrics)) as client:
        yield client, metrics, services
    queue.broker.close()
    services.close()


@pytest.mark.parametrize(
    ("settled", "instant", "code"),
    [
        ("healthy", "healthy", 200),
        ("degraded", "critical", 200),  # critical now, not yet settled: still ready
        ("healthy", "critical", 200),
        ("critical", "healthy", 503),  # one good answer does not clear a settled critical
        ("critical", "critical", 503),
    ],
)
def test_readyz_answers_the_settled_verdict(
    app: tuple[TestClient, Metrics, Services], settled: str, instant: str, code: int
) -> None:
    client, metrics, services = app
    metrics.publish_health(services, document(settled, instant))
    answer = client.get("/readyz")
    assert answer.status_code == code
    assert answer.json() == {"status": settled}  # no details, no checks
    assert "secret" not in answer.text


def test_before_the_first_evaluation_readyz_is_not_critical(
    app: tuple[TestClient, Metrics, Services],
) -> None:
    client, _, _ = app
    answer = client.get("/readyz")
    assert answer.status_code == 200 and answer.json() == {"status": "degraded"}


def test_the_full_document_needs_a_token_and_carries_both_verdicts(
    app: tuple[TestClient, Metrics, Services], sqlite_hubenv: HubEnv
) -> None:
    from runtime.tokens import TokenStore

    client, metrics, services = app
    metrics.publish_health(services, document("critical", "healthy"))
    assert client.get("/api/v1/health").status_code == 401
    assert client.get("/healthz").json() == {"status": "ok"}
    token = TokenStore(services.ready_db()).create(name="t", actor="test")["token"]
    doc = client.get("/api/v1/health", headers={"Authorization": f"Bearer {token}"}).json()
    assert doc["status"] == "critical"
    assert doc["instant"]["status"] == "healthy" and doc["settled"]["status"] == "critical"
    assert doc["checks"][0]["settled"] == "critical"
    gauges = client.get("/metrics", headers={"Authorization": f"Bearer {token}"}).text
    assert "hub_health_status 2.0" in gauges
    assert "hub_health_instant_status 0.0" in gauges
    assert 'hub_health_check_settled_status{check="proxmox"} 2.0' in gauges
    assert 'hub_health_check_status{check="proxmox"} 0.0' in gauges


def test_the_real_service_turns_critical_after_n_evaluations_and_back(
    sqlite_hubenv: HubEnv, pve: Any
) -> None:
    """`hubctl serve` end to end: the Hub VM stops, /readyz goes 503 once the settled verdict is
    critical (the history shows N critical evaluations first); it comes back after M healthy ones."""
    import time

    import requests

    from runtime.health import history
    from tests.support.service import serve

    def ready(service: Any, want: int) -> dict[str, Any]:
        deadline = time.monotonic() + 60  # a bound on waiting for the loop, not a speed assertion
        while time.monotonic() < deadline:
            answer = requests.get(service.url + "/readyz", timeout=10)
            if answer.status_code == want:
                return answer.json()
            time.sleep(0.1)
        raise AssertionError(f"/readyz never answered {want}")

    sqlite_hubenv.values.update({"HUB_HEALTH_CRITICAL_AFTER": "2", "HUB_HEALTH_HEALTHY_AFTER": "2"})
    for service in serve(sqlite_hubenv):
        assert ready(service, 200) == {"status": "healthy"}
        pve.vm(100).status = "stopped"
        assert ready(service, 503) == {"status": "critical"}
        doc = service.get("/api/v1/health").json()
        assert doc["status"] == "critical" and doc["instant"]["status"] == "critical"
        rows = history.samples(sqlite_hubenv.services().db, since=datetime.now(UTC) - timedelta(hours=1))
        first = next(i for i, r in enumerate(rows) if r.settled == "critical")
        assert [r.instant for r in rows[first - 1 : first + 1]] == ["critical", "critical"]
        assert rows[first - 1].settled != "critical"  # one critical evaluation was not enough
        pve.vm(100).status = "running"
        assert ready(service, 200) == {"status": "healthy"}


def test_a_process_without_the_loop_answers_the_leaders_verdict_from_the_history(
    app: tuple[TestClient, Metrics, Services],
) -> None:
    """Several API processes share the port and only the leader runs the health loop: a follower's
    /readyz must say what the leader settled (from hub_health_history), not 'no verdict yet', or the
    sentinel's probes would see critical only on the leader's share of connections."""
    from runtime.health import history

    client, _, services = app
    assert client.get("/readyz").json() == {"status": "degraded"}  # nothing evaluated anywhere yet
    history.record(
        services.ready_db(),
        at=datetime.now(UTC),
        instant="critical",
        settled="critical",
        checks=[{"name": "hub_vm", "status": "critical", "detail": "stopped"}],
    )
    import time

    time.sleep(1.1)  # past the one-second memory of the last read (not a speed assertion)
    answer = client.get("/readyz")
    assert answer.status_code == 503 and answer.json() == {"status": "critical"}


def test_a_verdict_nobody_renewed_is_no_verdict(app: tuple[TestClient, Metrics, Services]) -> None:
    from runtime.health import history
    from runtime.health.history import max_gap

    client, _, services = app
    old = datetime.now(UTC) - timedelta(seconds=max_gap(services.settings) + 60)
    history.record(services.ready_db(), at=old, instant="critical", settled="critical", checks=[])
    answer = client.get("/readyz")
    assert answer.status_code == 200 and answer.json() == {"status": "degraded"}
