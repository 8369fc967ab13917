"""Settings and bad input: one line naming the setting or argument, exit 2, no traceback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from hubcore.contract import EXPERIMENT_HUB_TYPE, HubType
from runtime.checkpoints.errors import CheckpointError
from runtime.checkpoints.preop import pre_operation
from runtime.errors import SettingsError
from runtime.settings import Environment, load_settings
from tests.support.hubenv import HubEnv, hub_snapshots, one_line_error


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"HUB_VMID": "abc"}, "HUB_VMID"),
        ({"HUB_VMID": "7"}, "HUB_VMID"),
        ({"HUB_ENVIRONMENT": "staging"}, "HUB_ENVIRONMENT"),
        ({"HUB_PROXMOX_URL": "http://127.0.0.1:8006"}, "HUB_PROXMOX_URL"),
        ({"HUB_PROXMOX_API_TOKEN": "no-separator"}, "HUB_PROXMOX_API_TOKEN"),
        ({"HUB_CHECKPOINT_SCHEDULE": "every day"}, "HUB_CHECKPOINT_SCHEDULE"),
        ({"HUB_CHECKPOINT_SCHEDULE": "99 0 * * *"}, "HUB_CHECKPOINT_SCHEDULE"),
        ({"HUB_CHECKPOINT_SCHEDULE": "0 0 30 2 *"}, "HUB_CHECKPOINT_SCHEDULE"),
        ({"HUB_HUB_TYPE": "moon"}, "HUB_HUB_TYPE"),
        ({"HUB_HUB_TYPE": "production"}, "HUB_HUB_TYPE"),
        ({"HUB_ENVIRONMENT": "production", "HUB_HUB_TYPE": "development"}, "HUB_HUB_TYPE"),
        ({"HUB_ENVIRONMENT": "experimental", "HUB_HUB_TYPE": "production"}, "HUB_HUB_TYPE"),
        ({"HUB_KEEP_DAILY": "-1"}, "HUB_KEEP_DAILY"),
        ({"HUB_PROXMOX_CA_BUNDLE": "/nonexistent/ca.pem"}, "HUB_PROXMOX_CA_BUNDLE"),
        ({"HUB_ENVIRONMENT": "production", "HUB_PROXMOX_INSECURE": "true"}, "HUB_PROXMOX_INSECURE"),
        ({"HUB_CONFIG_FILE": "/nonexistent.yaml"}, "HUB_CONFIG_FILE"),
    ],
)
def test_malformed_settings_name_the_setting(sqlite_hubenv: HubEnv, env: dict[str, str], names: str) -> None:
    result = sqlite_hubenv.run("checkpoint", "list", **env)
    assert result.returncode == 2
    assert one_line_error(result.stderr).startswith(f"hubctl: error: {names}:")
    assert result.stdout == ""


@pytest.mark.parametrize("missing", ["HUB_PROXMOX_URL", "HUB_PROXMOX_API_TOKEN", "HUB_VMID"])
def test_missing_proxmox_setting_is_named(sqlite_hubenv: HubEnv, missing: str) -> None:
    env = sqlite_hubenv.env()
    del env[missing]
    import subprocess

    from tests.support.hubenv import HUBCTL

    result = subprocess.run(
        [*HUBCTL, "checkpoint", "create"],
        env=env,
        capture_output=True,
        text=True,
        cwd=sqlite_hubenv.tmp,
        timeout=60,
    )
    assert result.returncode == 2
    assert missing in one_line_error(result.stderr)


def test_hub_node_is_only_a_hint(sqlite_hubenv: HubEnv) -> None:
    """The node comes from the cluster: a missing or stale HUB_NODE does not misdirect a checkpoint."""
    for node in ("", "pve9"):
        result = sqlite_hubenv.run("checkpoint", "create", "--json", HUB_NODE=node)
        assert result.returncode == 0, result.stderr
        assert '"node": "pve1"' in result.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["checkpoint", "show", "not-a-uuid"], "CHECKPOINT"),
        (["checkpoint", "show", "6f1c3f0e-4a49-4a0e-9b7e-1f7a3f0c2d11"], "no checkpoint"),
        (["checkpoint", "delete", "6f1c3f0e-4a49-4a0e-9b7e-1f7a3f0c2d11"], "no checkpoint"),
        (["checkpoint", "create", "--kind", "sometimes"], "--kind"),
        (["checkpoint", "create", "--vmid", "12"], "--vmid"),
        (["checkpoint", "list", "--status", "gone"], "--status"),
        (["checkpoint", "nope"], "nope"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(sqlite_hubenv: HubEnv, args: list[str], fragment: str) -> None:
    result = sqlite_hubenv.run(*args)
    assert result.returncode == 2, result.stderr
    assert fragment in one_line_error(result.stderr)


def test_json_errors_still_print_one_document(sqlite_hubenv: HubEnv) -> None:
    result = sqlite_hubenv.run("checkpoint", "show", "6f1c3f0e-4a49-4a0e-9b7e-1f7a3f0c2d11", "--json")
    assert result.returncode == 2
    assert "no checkpoint" in json.loads(result.stdout)["error"]


def test_config_file_is_read_and_the_environment_wins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)
    cfg = tmp_path / "hub.yaml"
    cfg.write_text("environment: production\nvmid: 120\nnode: pve2\nHUB_KEEP_DAILY: 9\n")
    monkeypatch.setenv("HUB_CONFIG_FILE", str(cfg))
    monkeypatch.setenv("HUB_VMID", "130")
    settings = load_settings()
    assert settings.environment is Environment.PRODUCTION
    assert settings.vmid == 130  # the environment wins over the file
    assert settings.node == "pve2" and settings.keep_daily == 9
    cfg.write_text("vmid: 120\nvmidd: 3\n")
    with pytest.raises(SettingsError, match="HUB_VMIDD: unknown setting"):
        load_settings()
    cfg.write_text("[unclosed\n")
    with pytest.raises(SettingsError, match="HUB_CONFIG_FILE"):
        load_settings()


def test_hub_type_follows_the_environment_unless_set(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(__import__("os").environ):
        if key.startswith("HUB_"):
            monkeypatch.delenv(key)
    assert load_settings().effective_hub_type is HubType.DEVELOPMENT  # it used to say production
    for environment, hub_type in [
        ("production", HubType.PRODUCTION),
        ("development", HubType.DEVELOPMENT),
        ("experimental", EXPERIMENT_HUB_TYPE),
    ]:
        settings = load_settings(environment=environment)
        assert settings.hub_type is None and settings.effective_hub_type is hub_type
    client = load_settings(environment="production", hub_type="client")
    assert client.hub_type is HubType.CLIENT and client.effective_hub_type is HubType.CLIENT
    with pytest.raises(SettingsError, match=r"^HUB_HUB_TYPE: 'development' cannot run in the production"):
        load_settings(environment="production", hub_type="development")


def test_db_upgrade_is_idempotent(database_url: str, tmp_path: Path) -> None:
    from tests.support.hubenv import HubEnv as Env

    env = Env(values={"HUB_DATABASE_URL": database_url}, tmp=tmp_path)
    first = json.loads(env.run("db", "upgrade", "--json").stdout)
    second = json.loads(env.run("db", "upgrade", "--json").stdout)
    assert first["changed"] is True and second["changed"] is False
    assert first["to"] == second["to"]


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    from tests.support.hubenv import HubEnv as Env

    env = Env(values={"HUB_DATABASE_URL": "postgresql+psycopg://nobody@127.0.0.1:1/none"}, tmp=tmp_path)
    result = env.run("db", "upgrade")
    assert result.returncode == 1
    assert "127.0.0.1" in one_line_error(result.stderr)


def test_pre_operation_checkpoints_first_and_audits_the_outcome(sqlite_hubenv: HubEnv, pve: Any) -> None:
    svc = sqlite_hubenv.checkpoints()
    ran: list[str] = []
    with pre_operation(svc, "upgrade postgres") as cp:
        assert cp.status == "completed" and cp.kind == "pre-operation"
        assert cp.snapname in hub_snapshots(pve)  # the checkpoint exists before the operation runs
        ran.append("op")
    with pytest.raises(RuntimeError), pre_operation(svc, "risky"):
        raise RuntimeError("boom")
    pve.fail("POST", "/nodes/pve1/qemu/100/snapshot", error="snapshot_feature_not_available")
    with pytest.raises(CheckpointError), pre_operation(svc, "never runs"):
        ran.append("must not run")
    assert ran == ["op"]
    from sqlalchemy import select

    from runtime.db import AuditEntry

    with svc.db.session() as s:
        ops = [
            (e.outcome, e.details["reason"])
            for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "operation"))
        ]
    assert ops == [("completed", "upgrade postgres"), ("failed", "risky")]


def test_health_reports_each_check(sqlite_hubenv: HubEnv, pve: Any) -> None:
    result = sqlite_hubenv.run("health", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["status"] == "healthy"
    assert {c["name"] for c in doc["checks"]} == {
        "database",
        "checkpoints",
        "jobs",
        "proxmox",
        "hub_vm",
        "hub_vm_usage",
        "disk",
        "memory",
    }
    pve.vm(100).status = "stopped"
    down = sqlite_hubenv.run("health", "--json")
    assert down.returncode == 1
    assert json.loads(down.stdout)["status"] == "critical"
    prod = sqlite_hubenv.run("health", "--json", HUB_ENVIRONMENT="production")
    checks = {c["name"]: c for c in json.loads(prod.stdout)["checks"]}
    assert checks["checkpoints"]["status"] == "degraded"  # scheduled, but none completed yet


def test_the_readme_settings_table_is_generated_from_the_model() -> None:
    """Every HUB_* setting the code reads is in the README, as the model says (no drift)."""
    from runtime import settings_table

    assert settings_table.readme_block(settings_table.README.read_text(encoding="utf-8")) == (
        settings_table.render()
    ), "README settings table is stale: run python -m runtime.settings_table --write"
