"""deploy/prometheus and deploy/grafana: each checked by its own tool, and kept true to the service.

``promtool`` (Debian's ``prometheus`` package, installed by ``scripts/setup.sh --system``) checks
the rules' syntax and runs their unit tests; it is skipped on a machine without it and a failure in
CI. Whatever the tool says, the schema checks below run everywhere: the rules and the dashboard use
only metric families the service's registry has, so renaming a metric cannot silently blank a
panel or disarm an alert.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from runtime.metrics import FAMILIES

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
RULES = DEPLOY / "prometheus" / "hub-rules.yml"
RULE_TESTS = DEPLOY / "prometheus" / "hub-rules.test.yml"
DASHBOARD = DEPLOY / "grafana" / "hub.json"
SAMPLE_SUFFIXES = ("_total", "_bucket", "_sum", "_count", "_created")
METRIC = re.compile(r"\bhub_[a-z0-9_]+")
REQUIRED_ALERTS = {"HubNoRecentCheckpoint", "HubCheckpointFailed", "HubHealthCritical", "HubJobFailureRate"}


def families_in(expr: str) -> set[str]:
    """The metric families an expression reads (``hub_jobs_total`` is the family ``hub_jobs``)."""
    out: set[str] = set()
    for name in METRIC.findall(expr):
        for suffix in SAMPLE_SUFFIXES:
            if name.endswith(suffix) and name.removesuffix(suffix) in FAMILIES:
                name = name.removesuffix(suffix)
                break
        out.add(name)
    return out


def rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def dashboard_exprs() -> list[str]:
    doc = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in doc["panels"] for target in panel.get("targets", [])]


def _promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("promtool is missing: `scripts/setup.sh --system` installs Debian's prometheus")
    pytest.skip("promtool is missing (install Debian's prometheus, or run `scripts/setup.sh --system`)")


def test_promtool_checks_the_rules() -> None:
    result = subprocess.run([_promtool(), "check", "rules", str(RULES)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_unit_tests_fire_each_alert_when_it_should() -> None:
    result = subprocess.run(
        [_promtool(), "test", "rules", RULE_TESTS.name],
        capture_output=True,
        text=True,
        cwd=RULE_TESTS.parent,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rules_have_the_shape_alertmanager_and_operators_rely_on() -> None:
    doc = yaml.safe_load(RULES.read_text())
    assert set(doc) == {"groups"}
    for group in doc["groups"]:
        assert set(group) <= {"name", "interval", "rules"} and group["name"] and group["rules"]
    alerts = rules()
    assert {rule["alert"] for rule in alerts} >= REQUIRED_ALERTS
    assert len({rule["alert"] for rule in alerts}) == len(alerts)
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"}, rule
        assert rule["labels"]["severity"] in ("warning", "critical"), rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert re.fullmatch(r"\d+[smh]", str(rule.get("for", "0s"))), rule["alert"]


def test_every_metric_in_rules_and_dashboard_is_one_the_service_exposes() -> None:
    used = {name for rule in rules() for name in families_in(rule["expr"])}
    used |= {name for expr in dashboard_exprs() for name in families_in(expr)}
    assert used - FAMILIES == set()
    # And the families are all on the dashboard.
    shown = {name for expr in dashboard_exprs() for name in families_in(expr)}
    assert shown >= {
        "hub_jobs",
        "hub_job_duration_seconds",
        "hub_checkpoint_duration_seconds",
        "hub_proxmox_requests",
        "hub_proxmox_request_duration_seconds",
        "hub_proxmox_errors",
        "hub_lock_wait_seconds",
        "hub_lock_refusals",
        "hub_retention_deletions",
    }


def test_the_dashboard_is_importable_grafana_json() -> None:
    doc = json.loads(DASHBOARD.read_text())
    assert doc["uid"] and doc["title"] and isinstance(doc["schemaVersion"], int)
    ids = [panel["id"] for panel in doc["panels"]]
    assert len(ids) == len(set(ids))
    variables = {v["name"] for v in doc["templating"]["list"]}
    for panel in doc["panels"]:
        assert panel["type"] in ("stat", "timeseries", "gauge", "table", "text"), panel["title"]
        assert (
            set(panel["gridPos"]) == {"x", "y", "w", "h"}
            and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        )
        # A panel's data source is the dashboard's variable, so an import picks the operator's Prometheus.
        assert panel["datasource"]["uid"].strip("${}") in variables, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert refs and len(refs) == len(set(refs)), panel["title"]


def test_the_schema_check_would_catch_a_renamed_metric() -> None:
    assert families_in("rate(hub_jobs_total[5m])") == {"hub_jobs"}
    assert families_in("hub_job_duration_seconds_bucket") == {"hub_job_duration_seconds"}
    assert families_in("rate(hub_jobz_total[5m])") - FAMILIES == {"hub_jobz_total"}
