"""Domain outcomes are domain errors; Proxmox errors stay attached as the cause."""

from __future__ import annotations

from typing import Any

import pytest

from hubcore.proxmox import ProxmoxError, ProxmoxTaskFailed
from runtime.api.errors import status_for
from runtime.checkpoints import naming
from runtime.checkpoints.errors import CheckpointError, VerificationError
from tests.support.hubenv import HUB_VMID, HubEnv


def test_a_snapshot_missing_after_its_task_is_not_a_proxmox_error(sqlite_hubenv: HubEnv, pve: Any) -> None:
    """Proxmox answered correctly (the task said OK, the snapshot is not there): not a 502."""

    def vanish(message: str) -> None:
        if message.startswith("snapshot task finished"):
            for name in list(pve.vm(HUB_VMID).snapshots):
                if naming.is_hub_snapname(name):
                    del pve.vm(HUB_VMID).snapshots[name]

    with pytest.raises(CheckpointError) as info:
        sqlite_hubenv.checkpoints(progress=vanish).create()
    cause = info.value.__cause__
    assert isinstance(cause, VerificationError) and not isinstance(cause, ProxmoxError)
    assert "not on the VM after its task ended" in str(info.value)
    assert info.value.checkpoint.status == "failed"
    status, code = status_for(info.value)
    assert status != 502 and code != "proxmox_error"
    assert status_for(cause)[0] != 502


def test_a_proxmox_failure_keeps_its_cause(sqlite_hubenv: HubEnv, pve: Any) -> None:
    pve.fail("POST", f"/nodes/pve1/qemu/{HUB_VMID}/snapshot", error="snapshot_feature_not_available")
    with pytest.raises(CheckpointError) as info:
        sqlite_hubenv.checkpoints().create()
    assert isinstance(info.value.__cause__, ProxmoxTaskFailed)
