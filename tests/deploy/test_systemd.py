"""deploy/systemd: hub.service (runs the compose stack) and hub-native.service (no Docker).

``systemd-analyze verify`` is systemd's own parser: it reports unknown keys, sections and bad values.
On this machine the units' commands (docker, /opt/hub/venv, the identity check in /usr/local/sbin)
are not installed, so those reports, and only those, are expected.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from hubinfra.cloudinit import DEPLOY_DIR, DEPLOY_FILES, IDENTITY_CHECK_PATH
from tests.deploy.nginx_harness import PRODUCTION_DIRECTIVES

UNITS = DEPLOY_DIR / "systemd"
# What `verify` says about a host that lacks the unit's programs or dependencies: not our unit's fault.
ENVIRONMENTAL = re.compile(
    r"Command \S+ is not executable: No such file or directory"
    r"|Unit \S+\.service not found"
    r"|Failed to create \S+/start: Unit \S+ not found"
)


def unit_lines(path: Path, key: str) -> list[str]:
    prefix = f"{key}="
    return [line.removeprefix(prefix) for line in path.read_text().splitlines() if line.startswith(prefix)]


def verify_problems(unit: Path, tmp_path: Path) -> list[str]:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        if os.environ.get("CI"):
            pytest.fail("systemd-analyze is missing (Debian: systemd)")
        pytest.skip("systemd-analyze is missing")
    copy = tmp_path / unit.name.replace("@.", "@1.")  # a template is verified as one instance
    copy.write_text(unit.read_text())
    result = subprocess.run(
        [analyze, "verify", "--man=no", str(copy)], capture_output=True, text=True, timeout=60, check=False
    )
    lines = (result.stdout + result.stderr).splitlines()
    return [line for line in lines if line.strip() and not ENVIRONMENTAL.search(line)]


@pytest.mark.parametrize("name", ["hub.service", "hub-native.service", "hub-worker@.service"])
def test_systemd_accepts_the_unit(name: str, tmp_path: Path) -> None:
    assert verify_problems(UNITS / name, tmp_path) == []


def test_the_verify_check_has_teeth(tmp_path: Path) -> None:
    broken = tmp_path / "src" / "hub-native.service"
    broken.parent.mkdir()
    broken.write_text((UNITS / "hub-native.service").read_text().replace("ProtectHome=", "ProtectHomee="))
    problems = verify_problems(broken, tmp_path)
    assert any("ProtectHomee" in line for line in problems), problems


def test_hub_service_runs_the_compose_file_hubinfra_installs() -> None:
    unit = UNITS / "hub.service"
    assert unit_lines(unit, "ExecStartPre")[0] == IDENTITY_CHECK_PATH
    compose_target = DEPLOY_FILES["deploy/compose.yaml"]
    (start,) = unit_lines(unit, "ExecStart")
    assert start.startswith("/usr/bin/docker compose ") and f"-f {compose_target} up" in start
    assert DEPLOY_FILES["deploy/systemd/hub.service"] == "/etc/systemd/system/hub.service"


def test_native_unit_checks_identity_migrates_then_serves_where_nginx_proxies() -> None:
    unit = UNITS / "hub-native.service"
    pre = unit_lines(unit, "ExecStartPre")
    # First, as root (`+`): the settings must be this VM's.
    assert pre[0] == f"+{IDENTITY_CHECK_PATH}"
    assert pre[-1].endswith("/hubctl db upgrade")
    (start,) = unit_lines(unit, "ExecStart")
    args = start.split()
    assert args[0].endswith("/hubctl") and args[1] == "serve"
    upstream = PRODUCTION_DIRECTIVES["upstream"].removeprefix("server ").rstrip(";")
    assert f"{args[args.index('--host') + 1]}:{args[args.index('--port') + 1]}" == upstream
    assert unit_lines(unit, "User") == ["hub"]
    assert "hub.service" in unit_lines(unit, "Conflicts")


def test_native_unit_takes_secrets_from_files() -> None:
    unit = UNITS / "hub-native.service"
    credentials = dict(line.split(":", 1) for line in unit_lines(unit, "LoadCredential"))
    assert credentials == {"hub.yaml": "/etc/hub/hub.yaml", "pgpass": "/etc/hub/secrets/pgpass"}
    environment = dict(line.split("=", 1) for line in unit_lines(unit, "Environment"))
    assert environment["HUB_CONFIG_FILE"] == "%d/hub.yaml"
    assert environment["PGPASSFILE"] == "%d/pgpass"
    for key in environment:
        assert not re.search(r"PASSWORD|SECRET|TOKEN", key), f"{key}: secrets come from credentials"


def test_the_native_worker_unit_runs_hubctl_worker_with_the_services_settings() -> None:
    unit, service = UNITS / "hub-worker@.service", UNITS / "hub-native.service"
    (start,) = unit_lines(unit, "ExecStart")
    assert start.split()[0].endswith("/hubctl") and start.split()[1:] == ["worker"]
    for key in ("LoadCredential", "Environment", "User"):
        assert unit_lines(unit, key) == unit_lines(service, key), key
    assert "hub-native.service" in unit_lines(unit, "PartOf")[0]  # stopped and restarted with it
    assert unit_lines(unit, "ExecStartPre") == [f"+{IDENTITY_CHECK_PATH}"]
