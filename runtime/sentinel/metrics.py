"""The sentinel's Prometheus counters, in its own registry (``hubctl sentinel watch --metrics-port``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

REGISTRY = CollectorRegistry(auto_describe=True)

PROBES = Counter(
    "hub_sentinel_probes", "Readiness probes of the Hub, by verdict.", ["verdict"], registry=REGISTRY
)
RUNS = Counter("hub_sentinel_ladder_runs", "Ladder runs, by outcome.", ["outcome"], registry=REGISTRY)
STEPS = Counter(
    "hub_sentinel_ladder_steps",
    "Ladder steps, by action and outcome.",
    ["action", "outcome"],
    registry=REGISTRY,
)
EVENTS = Counter("hub_sentinel_events", "Journal events, by kind.", ["kind"], registry=REGISTRY)
ALERTS = Counter("hub_sentinel_alerts", "Alerts, by delivery outcome.", ["outcome"], registry=REGISTRY)
STATE = Gauge(
    "hub_sentinel_error", "1 while the sentinel is in error (waiting for reset).", registry=REGISTRY
)
