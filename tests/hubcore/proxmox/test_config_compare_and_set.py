"""``set_vm_config_checked``: of two writers that read the same config, exactly one writes (PVE's digest)."""

from __future__ import annotations

from typing import Any

import pytest

from hubcore.proxmox.errors import ProxmoxConflict
from hubcore.proxmox.vms import VmRef
from tests.support.hubenv import HUB_VMID, NODE, fake_pve_client


def test_a_stale_digest_is_refused_and_nothing_is_written(pve: Any, fakepve_cafile: str) -> None:
    client = fake_pve_client(pve, fakepve_cafile)
    vm = VmRef(HUB_VMID, NODE)
    digest = str(client.vm_config(vm)["digest"])
    client.set_vm_config_checked(vm, digest=digest, description="first writer")
    with pytest.raises(ProxmoxConflict, match="checksum mismatch"):
        client.set_vm_config_checked(vm, digest=digest, description="second writer, stale read")
    assert client.vm_config(vm)["description"] == "first writer"
    fresh = str(client.vm_config(vm)["digest"])
    client.set_vm_config_checked(vm, digest=fresh, description="second writer, read again")
    assert pve.vm(HUB_VMID).config["description"] == "second writer, read again"
