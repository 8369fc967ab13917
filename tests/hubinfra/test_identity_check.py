"""deploy/hub-identity-check: the runtime never starts on settings written for another VM."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import yaml

from hubinfra.cloudinit import IDENTITY_CHECK_PATH, REPO_ROOT, parse_user_data
from tests.hubinfra.harness import Run

SCRIPT = REPO_ROOT / "deploy" / "hub-identity-check"
FILE = "proxmoxve:index/fileLegacy:FileLegacy"


def _check(tmp_path: Path, settings_text: str, product_uuid: str) -> subprocess.CompletedProcess[str]:
    settings = tmp_path / "hub.yaml"
    settings.write_text(settings_text)
    product = tmp_path / "product_uuid"
    product.write_text(product_uuid + "\n")
    env = {**os.environ, "HUB_CONFIG_FILE": str(settings), "HUB_PRODUCT_UUID_FILE": str(product)}
    return subprocess.run(["sh", str(SCRIPT)], env=env, capture_output=True, text=True, check=False)


def _settings_text(run: Run, name: str) -> str:
    document = parse_user_data(run.one(FILE, name).inputs["sourceRaw"]["data"])
    return next(f["content"] for f in document["write_files"] if f["path"] == "/etc/hub/hub.yaml")


def test_hub_settings_pass_on_the_hub_and_fail_on_a_clone(dev_exp: Run, tmp_path: Path) -> None:
    dev = dev_exp
    hub = _settings_text(dev, "hub-hub-user-data")
    hub_uuid = yaml.safe_load(hub)["vm_uuid"]
    assert _check(tmp_path, hub, hub_uuid.upper()).returncode == 0  # DMI may report upper case
    # A clone booting with the Hub's inherited file: Proxmox gave it another uuid.
    exp = _settings_text(dev, "faster-gate-user-data")
    clone_uuid = yaml.safe_load(exp)["vm_uuid"]
    refused = _check(tmp_path, hub, clone_uuid)
    assert refused.returncode == 1
    assert "refusing to start" in refused.stderr
    # ... and with its own file it starts.
    assert _check(tmp_path, exp, clone_uuid).returncode == 0


def test_settings_without_vm_uuid_are_refused(tmp_path: Path) -> None:
    result = _check(tmp_path, "environment: production\nvmid: 100\n", "2babd623-f266-5d58-b4b3-b8018972154c")
    assert result.returncode == 1
    assert "names no vm_uuid" in result.stderr


def test_quoted_uuid_is_read(tmp_path: Path) -> None:
    text = "vm_uuid: '12345678-1234-5678-1234-567812345678'\n"
    assert _check(tmp_path, text, "12345678-1234-5678-1234-567812345678").returncode == 0


def test_the_unit_runs_the_check_after_cloud_init_and_cloud_init_installs_it(prod: Run) -> None:
    unit = (REPO_ROOT / "deploy" / "systemd" / "hub.service").read_text()
    pre = [line for line in unit.splitlines() if line.startswith("ExecStartPre=")]
    assert pre[0] == f"ExecStartPre={IDENTITY_CHECK_PATH}"
    after = next(line for line in unit.splitlines() if line.startswith("After="))
    assert "cloud-init.service" in after
    document = parse_user_data(prod.one(FILE, "hub-hub-user-data").inputs["sourceRaw"]["data"])
    files = {f["path"]: f for f in document["write_files"]}
    assert files[IDENTITY_CHECK_PATH]["permissions"] == "0755"
    assert files[IDENTITY_CHECK_PATH]["content"] == SCRIPT.read_text()
