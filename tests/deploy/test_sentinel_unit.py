"""deploy/systemd/hub-sentinel.service: systemd accepts it, it runs `hubctl sentinel watch` with its own
SQLite database kept across restarts, and its secrets come from a credential file."""

from __future__ import annotations

import re
from pathlib import Path

from runtime.settings import Settings
from tests.deploy.test_systemd import UNITS, unit_lines, verify_problems

UNIT = UNITS / "hub-sentinel.service"


def test_systemd_accepts_the_sentinel_unit(tmp_path: Path) -> None:
    assert verify_problems(UNIT, tmp_path) == []


def test_it_watches_with_its_own_database_and_restarts() -> None:
    (start,) = unit_lines(UNIT, "ExecStart")
    args = start.split()
    assert args[0].endswith("/hubctl") and args[1:] == ["sentinel", "watch"]
    environment = dict(line.split("=", 1) for line in unit_lines(UNIT, "Environment"))
    assert environment["HUB_DATABASE_URL"] == "sqlite:////var/lib/hub-sentinel/sentinel.db"
    assert unit_lines(UNIT, "StateDirectory") == ["hub-sentinel"]
    assert unit_lines(UNIT, "Restart") == ["always"]
    for key in environment:
        assert not re.search(r"PASSWORD|SECRET|TOKEN|ALERT", key), f"{key}: secrets come from credentials"


def test_the_env_example_names_only_real_settings() -> None:
    example = UNITS / "hub-sentinel.env.example"
    keys = [
        line.split("=", 1)[0]
        for line in example.read_text().splitlines()
        if line and not line.startswith("#")
    ]
    fields = {"HUB_" + name.upper() for name in Settings.model_fields}
    assert [k for k in keys if k not in fields] == []
    assert "HUB_SENTINEL_HUB_URL" in keys and "HUB_VMID" in keys
