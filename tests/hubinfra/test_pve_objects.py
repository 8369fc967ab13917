"""The objects hubinfra declares through the API (pve_objects) and a clone's clean-up, against fakepve
(PVE 9 schema validation, its firewall model and its clone): what Proxmox does, not what we assume."""

from __future__ import annotations

from typing import Any

import pytest

from hubcore.proxmox import ProxmoxClient, VmRef
from hubinfra.clone_init import configure_clone
from hubinfra.pve_objects import (
    PveObjectError,
    SdnObjectProvider,
    SnapshotCloneProvider,
    api_for,
    clear_guest_firewall,
    cut_off_problem,
    existing_rules_problem,
    net0_on,
)
from tests.support.hubenv import HUB_VMID, NODE, TOKEN_ID, TOKEN_SECRET, fake_pve_client

CLONE_ID = 1150
SNAP = "hub-" + "c" * 32


@pytest.fixture
def props(pve: Any, fakepve_cafile: str) -> dict[str, Any]:
    return {
        "endpoint": pve.url,
        "insecure": False,
        "ca_bundle": fakepve_cafile,
        "api_token": f"{TOKEN_ID}={TOKEN_SECRET}",
    }


@pytest.fixture
def client(pve: Any, fakepve_cafile: str) -> ProxmoxClient:
    return fake_pve_client(pve, fakepve_cafile)


def test_sdn_zone_and_vnet_pass_pves_schema(props: dict[str, Any], pve: Any) -> None:
    provider = SdnObjectProvider()
    zone = {
        **props,
        "kind": "zones",
        "object_id": "hubdev",
        "params": {"type": "vlan", "bridge": "vmbr0", "nodes": NODE},
    }
    vnet = {
        **props,
        "kind": "vnets",
        "object_id": "hdtask1",
        "params": {"zone": "hubdev", "tag": 111, "alias": "hub task network", "isolate-ports": 1},
    }
    assert provider.create(zone).id == "zones/hubdev"
    assert provider.create(vnet).id == "vnets/hdtask1"
    # fakepve keeps no SDN state: the point is that both requests pass PVE 9's schema.


@pytest.mark.parametrize("bad", ["h", "hubdev123"])
def test_pve_refuses_sdn_ids_outside_two_to_eight_characters(props: dict[str, Any], bad: str) -> None:
    """The rule hubcore.contract.validate_sdn_id copies (pve-network VnetPlugin.pm pve-sdn-vnet-id)."""
    with pytest.raises(PveObjectError, match="vnet"):
        SdnObjectProvider().create(
            {**props, "kind": "vnets", "object_id": bad, "params": {"zone": "hubdev", "tag": 5}}
        )


def _inherit_firewall(props: dict[str, Any], vmid: int) -> None:
    """What qemu-server's clone does: the source's `<vmid>.fw` becomes the clone's (clone_vmfw_conf)."""
    fw = api_for(props).nodes(NODE).qemu(vmid).firewall
    fw.rules.post(type="group", action="hubprod-hub", comment="hub policy: hubprod-hub")
    fw.ipset.post(name="ipfilter-net0", comment="the only source address net0 may use")
    fw.ipset("ipfilter-net0").post(cidr="10.20.0.10", comment="the SOURCE Hub")


def test_a_clone_from_a_snapshot_is_shaped_and_its_inherited_firewall_removed(
    pve: Any, props: dict[str, Any], client: ProxmoxClient
) -> None:
    source = pve.find(NODE, HUB_VMID)
    source.config.update(
        {"net0": "virtio=BC:24:11:00:00:01,bridge=hpmgmt,firewall=1", "protection": 1, "onboot": 1}
    )
    client.take_snapshot(NODE, HUB_VMID, name=SNAP, description="hub checkpoint", timeout=30)
    pve.pools.setdefault("hub-prod-exp-alpha", set())
    _inherit_firewall(props, CLONE_ID)
    clone = {
        **props,
        "node": NODE,
        "vmid": CLONE_ID,
        "source_vmid": HUB_VMID,
        "snapshot": SNAP,
        "datastore": "local-lvm",
        "pool": "hub-prod-exp-alpha",
        "name": "hub-prod-exp-alpha",
        "description": "experimental hub",
        "tags": ["experimental", "hub"],
        "cores": 4,
        "memory": 8192,
        "bridge": "x1ko",
    }
    result = SnapshotCloneProvider().create(clone)
    assert "api_token" not in result.outs
    config = client.vm_config(VmRef(vmid=CLONE_ID, node=NODE))
    assert (
        config["net0"].startswith("virtio=")
        and "bridge=x1ko" in config["net0"]
        and "firewall=1" in config["net0"]
    )
    fw = api_for(props).nodes(NODE).qemu(CLONE_ID).firewall
    assert fw.rules.get() == [] and fw.ipset.get() == []
    # The provider's rules resource can now create the clone's own list (it aborts over any rule).
    fw.rules.post(type="group", action="hubprod-xhub")
    # Adopted, not re-cloned, on a re-run after a crash.
    SnapshotCloneProvider().create(clone)


def test_configure_clone_resets_what_a_clone_copies_so_it_can_be_destroyed(
    pve: Any, client: ProxmoxClient
) -> None:
    pve.add_vm(
        CLONE_ID,
        "hub-prod-exp-alpha",
        node=NODE,
        status="stopped",
        config={
            "scsi0": "local-lvm:vm-1150-disk-0,size=50G",
            "ide2": "local-lvm:vm-1150-cloudinit,media=cdrom",
            "protection": 1,
            "onboot": 1,
            "startup": "order=1,up=30",
        },
    )
    vm = VmRef(vmid=CLONE_ID, node=NODE)
    changes = configure_clone(
        client,
        vm,
        datastore="local-lvm",
        cicustom="user=local:snippets/u.yaml",
        ipconfig0="ip=10.220.50.10/24,gw=10.220.50.1",
        vm_uuid="2babd623-f266-5d58-b4b3-b8018972154c",
        start=False,
        restart=False,
    )
    assert changes["delete"] == "startup"
    config = client.vm_config(vm)
    assert not int(config.get("protection", 0)) and not int(config.get("onboot", 0))
    assert "startup" not in config
    client.destroy(vm, purge=True, timeout=30)  # PVE refuses "can't remove VM" while protected


def test_clear_guest_firewall_is_idempotent(pve: Any, props: dict[str, Any]) -> None:
    _inherit_firewall(props, CLONE_ID)
    api = api_for(props)
    assert clear_guest_firewall(api, node=NODE, vmid=CLONE_ID) == {"rules": 1, "ipsets": 1, "aliases": 0}
    assert clear_guest_firewall(api, node=NODE, vmid=CLONE_ID) == {"rules": 0, "ipsets": 0, "aliases": 0}


def test_net0_keeps_model_and_mac() -> None:
    assert net0_on("virtio=BC:24:11:00:00:01,bridge=hpmgmt,firewall=0,tag=5", "x1ko") == (
        "virtio=BC:24:11:00:00:01,bridge=x1ko,firewall=1"
    )


def test_cluster_firewall_guard_messages() -> None:
    assert cut_off_problem("10.20.0.55", allowed=["10.20.0.0/24"]) is None
    problem = cut_off_problem("192.168.1.7", allowed=["10.20.0.0/24"])
    assert problem is not None and "hub:network.operatorAccess" in problem
    assert existing_rules_problem([]) is None
    text = existing_rules_problem([{"pos": 0, "type": "in", "action": "ACCEPT", "comment": "ssh"}])
    assert text is not None and "pulumi import proxmoxve:firewall/rulesLegacy:RulesLegacy" in text


def test_guard_refuses_over_existing_datacenter_rules(pve: Any, props: dict[str, Any]) -> None:
    from hubinfra.pve_objects import ClusterFirewallGuardProvider

    api_for(props).cluster.firewall.rules.post(
        type="in", action="ACCEPT", proto="tcp", dport="22", comment="ssh"
    )
    with pytest.raises(PveObjectError, match="already has 1 rule"):
        ClusterFirewallGuardProvider().create({**props, "allowed": ["127.0.0.0/8"]})
