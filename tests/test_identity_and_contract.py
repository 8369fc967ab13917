"""The settings file hubinfra renders is exactly what the runtime loads, and the runtime refuses to
act on settings written for another VM (a snapshot clone booting with its source's file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from hubinfra.cloudinit import RuntimeSettings
from hubinfra.config import CheckpointPolicy
from runtime.settings import Environment
from tests.conftest import HubEnv, hub_snapshots, one_line_error

VM_UUID = "3f0b8a4e-7c1d-4e2a-9b6f-0d1c2e3f4a5b"


def rendered(**overrides: Any) -> str:
    values: dict[str, Any] = dict(
        environment="production",
        proxmox_url="https://pve.example:8006/",
        proxmox_api_token="hub@pve!hub=" + "1" * 36,
        proxmox_insecure=False,
        node="pve1",
        vmid=100,
        checkpoints=CheckpointPolicy(
            schedule="0 0 * * *", keep_last=3, keep_daily=14, keep_weekly=8, keep_monthly=6
        ),
        hub_type="production",
        hub_label="main",
        vm_uuid=VM_UUID,
    )
    values.update(overrides)
    return RuntimeSettings(**values).render()


def test_hubinfra_settings_file_loads_in_the_runtime(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runtime.settings import load_settings

    for key in [k for k in __import__("os").environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)
    cfg = tmp_path / "hub.yaml"
    cfg.write_text(rendered())
    monkeypatch.setenv("HUB_CONFIG_FILE", str(cfg))
    prod = load_settings()
    assert prod.environment is Environment.PRODUCTION and prod.vmid == 100 and prod.node == "pve1"
    assert prod.effective_schedule == "0 0 * * *" and prod.keep_daily == 14
    assert prod.vm_uuid == VM_UUID
    assert prod.database_url.startswith("postgresql+psycopg://") and prod.redis_url
    cfg.write_text(
        rendered(
            environment="experimental",
            experiment="faster-gc",
            vmid=1150,
            source_vmid=100,
            source_checkpoint="hub-" + "a" * 32,
            params={"gc_interval": 30},
            checkpoints=CheckpointPolicy(),
        )
    )
    exp = load_settings()
    assert exp.environment is Environment.EXPERIMENTAL and exp.experiment == "faster-gc"
    assert exp.vmid == 1150 and exp.source_vmid == 100 and exp.params == {"gc_interval": 30}
    assert exp.effective_schedule == "manual"


def test_clone_with_inherited_settings_refuses_to_touch_proxmox(
    sqlite_hubenv: HubEnv, pve: Any, tmp_path: Path
) -> None:
    machine = tmp_path / "product_uuid"
    machine.write_text("0E9C2B41-1111-4222-8333-944455566677\n")  # a clone: Proxmox gave it a new uuid
    result = sqlite_hubenv.run(
        "checkpoint", "create", HUB_VM_UUID=VM_UUID, HUB_PRODUCT_UUID_FILE=str(machine)
    )
    assert result.returncode == 2
    line = one_line_error(result.stderr)
    assert "HUB_VM_UUID" in line and "clone" in line
    assert hub_snapshots(pve) == {} and pve.requests == []

    machine.write_text(VM_UUID.upper() + "\n")  # the VM the settings were written for
    ok = sqlite_hubenv.run("checkpoint", "create", HUB_VM_UUID=VM_UUID, HUB_PRODUCT_UUID_FILE=str(machine))
    assert ok.returncode == 0, ok.stderr
    assert len(hub_snapshots(pve)) == 1
