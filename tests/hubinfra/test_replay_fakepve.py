"""Replay every resource the program declares against fakepve (issue 12).

No Pulumi CLI runs here: `run_program` records the resources under mocks, `tests/hubinfra/replay.py`
turns each pulumi-proxmoxve resource into the requests the bpg provider sends on create, and fakepve
(PVE 9 API schema, firewall, pool and clone models) must accept every one. A declared type with no
mapping fails the test unless it is in replay.SKIP_TYPES; hubinfra's own dynamic resources
(pve_objects, clone_init) are skipped by name and tested against fakepve in their own tests.
"""

from __future__ import annotations

import copy
import secrets
import ssl
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from fakepve import shapes

from tests.hubinfra import replay as rp
from tests.hubinfra.harness import Resource, Run, stack_config

REPLAY_TOKEN = "root@pam!replay"


def _session(pve: Any, cafile: str) -> httpx.Client:
    secret = secrets.token_hex(16)
    pve.apitokens[REPLAY_TOKEN] = secret
    return httpx.Client(
        verify=ssl.create_default_context(cafile=cafile),
        headers={"Authorization": f"PVEAPIToken={REPLAY_TOKEN}={secret}"},
    )


def _preconditions(pve: Any, s: httpx.Client, stack: str) -> None:
    """What a stack assumes exists before `pulumi up` (its own config: hub:node(s), hub:datastore,
    hub:snippetsDatastore, hub:templateVmId), made through the API where fakepve models it."""
    config = stack_config(stack)
    node = str(config["hub:node"])
    for name in {node, *config.get("hub:nodes", [])}:
        pve.add_node(str(name))
    datastore, snippets = str(config["hub:datastore"]), str(config["hub:snippetsDatastore"])
    calls: list[tuple[str, str, dict[str, Any]]] = []
    if datastore not in pve.storages:
        calls.append(
            ("POST", "/storage", {"storage": datastore, "type": "rbd", "pool": "vm", "content": "images"})
        )
    calls.append(("PUT", f"/storage/{snippets}", {"content": "iso,vztmpl,backup,snippets"}))
    for method, path, body in calls:
        resp = s.request(method, f"{pve.url}/api2/json{path}", data=body)
        assert resp.status_code == 200, (path, resp.status_code, resp.text)
    template = int(config["hub:templateVmId"])
    pve.add_vm(
        template,
        "hub-template",
        node=node,
        template=True,
        config={"scsi0": f"{datastore}:base-{template}-disk-0,size=10G", "template": 1, "ostype": "l26"},
    )


def _access_state() -> rp.AccessState:
    return rp.AccessState(builtin_roles=set(shapes.ROLES), privileges=set(shapes.PRIVILEGES))


def _replay(resources: list[Resource], pve: Any, cafile: str, stack: str) -> rp.Outcome:
    s = _session(pve, cafile)
    _preconditions(pve, s, stack)
    return rp.replay(resources, s, pve.url, _access_state())


@pytest.mark.parametrize("stack", ["dev", "prod", "prod_exp", "dev_exp", "prod_sentinel"])
def test_every_declared_resource_replays_against_fakepve(
    stack: str, request: pytest.FixtureRequest, fakepve: Any, fakepve_cafile: str
) -> None:
    run: Run = request.getfixturevalue(stack)
    out = _replay(run.resources, fakepve, fakepve_cafile, run.stack)
    assert not out.unmapped, (
        f"declared types with no replay mapping (add one to replay.MAPPINGS): {out.unmapped}"
    )
    assert not out.refused, "\n".join(out.refused)
    provider_types = {r.type for r in run.resources if r.type.startswith("proxmoxve:")}
    assert provider_types <= set(rp.MAPPINGS) | set(rp.SKIP_TYPES)
    assert out.calls > len(out.replayed) > 0
    print(f"{stack}: {len(out.replayed)} resources, {out.calls} requests; skipped: {out.skipped_dynamic}")


def test_prod_exp_covers_every_mapped_type(prod_exp: Run) -> None:
    """The richest stack declares every type the replay maps (so no mapping is dead code)."""
    declared = {r.type for r in prod_exp.resources}
    assert set(rp.MAPPINGS) <= declared, set(rp.MAPPINGS) - declared


# The dynamic resources prod_exp declares, skipped by the replay: hubinfra/pve_objects.py (SDN zone and
# vnets, the cluster-firewall guard, the experiment's snapshot clone) and hubinfra/clone_init.py (the
# clone's cloud-init), each tested against fakepve in test_pve_objects.py / test_clone_init.py.
SKIPPED_DYNAMIC_PROD_EXP = {
    "hub-network-zone",
    "hub-network-vnet-hpmgmt",
    "hub-network-vnet-hptask1",
    "hub-network-vnet-hptask2",
    "hub-network-vnet-x1mc",
    "hub-network-vnet-x1p4",
    "hub-network-cluster-firewall-guard",
    "hub-exp-alpha-vm",
    "hub-exp-alpha-cloud-init",
}


def test_dynamic_resources_skipped_are_hubinfras_own(prod_exp: Run) -> None:
    dynamic = prod_exp.of_type(rp.DYNAMIC)
    assert {r.name for r in dynamic} == SKIPPED_DYNAMIC_PROD_EXP
    assert all(rp.dynamic_module(r) is not None for r in dynamic), [r.name for r in dynamic]


def test_a_type_without_mapping_fails(prod: Run, fakepve: Any, fakepve_cafile: str) -> None:
    extra = Resource("proxmoxve:index/hagroup:Hagroup", "new-type", {"group": "x"})
    out = _replay([*prod.resources, extra], fakepve, fakepve_cafile, prod.stack)
    assert out.unmapped == ["proxmoxve:index/hagroup:Hagroup new-type"]


# -------------------------------------------------------------- negative cases


def _one(resources: list[Resource], type_: str, name_part: str) -> Resource:
    found = [r for r in resources if r.type == type_ and name_part in r.name]
    assert len(found) == 1, [r.name for r in found]
    return found[0]


def _bad_pool_id(res: list[Resource]) -> str:
    _one(res, "proxmoxve:index/poolLegacy:PoolLegacy", "hub-hub-access-pool").inputs["poolId"] = "hub prod!"
    return "/pools"


def _bad_macro(res: list[Resource]) -> str:
    g = _one(res, "proxmoxve:cluster/firewall/security/groupLegacy:GroupLegacy", "group-hub")
    g.inputs["rules"][1]["macro"] = "NoSuchMacro"
    return "unknown macro"


def _bad_proto(res: list[Resource]) -> str:
    r = _one(res, "proxmoxve:firewall/rulesLegacy:RulesLegacy", "cluster-rules")
    r.inputs["rules"][0]["proto"] = "tcpp"
    return "unknown protocol"


def _undeclared_ipset(res: list[Resource]) -> str:
    g = _one(res, "proxmoxve:cluster/firewall/security/groupLegacy:GroupLegacy", "group-task")
    g.inputs["rules"][0]["dest"] = "+hubprod-nosuch"
    return "no such ipset"


def _bad_privilege(res: list[Resource]) -> str:
    _one(res, "proxmoxve:index/roleLegacy:RoleLegacy", "role-pool").inputs["privileges"].append(
        "VM.Snapshots"
    )
    return "invalid privilege"


def _bad_role_id(res: list[Resource]) -> str:
    _one(res, "proxmoxve:index/roleLegacy:RoleLegacy", "role-pool").inputs["roleId"] = "hub prod/pool"
    return "/access/roles"


def _acl_unknown_role(res: list[Resource]) -> str:
    _one(res, "proxmoxve:index/acl:Acl", "hub-hub-access-user-acl-0").inputs["roleId"] = "hub-prod-pools"
    return "role 'hub-prod-pools' does not exist"


def _bad_user_id(res: list[Resource]) -> str:
    _one(res, "proxmoxve:index/userLegacy:UserLegacy", "hub-hub-access-user").inputs["userId"] = "hub"
    return "/access/users"


def _vm_into_unknown_pool(res: list[Resource]) -> str:
    _one(res, "proxmoxve:index/vmLegacy:VmLegacy", "hub-hub-vm").inputs["poolId"] = "hub-prd"
    return "pool 'hub-prd' does not exist"


def _bad_vm_group(res: list[Resource]) -> str:
    r = _one(res, "proxmoxve:firewall/rulesLegacy:RulesLegacy", "hub-hub-fw-rules")
    r.inputs["rules"][0]["securityGroup"] = "hubprod-hubs"
    return "hubprod-hubs"


def _bad_subnet_gateway(res: list[Resource]) -> str:
    _one(res, "proxmoxve:sdn/subnet:Subnet", "subnet-hpmgmt").inputs["gateway"] = "10.20.0.300"
    return "/subnets"


def _bad_vm_ostype(res: list[Resource]) -> str:
    _one(res, "proxmoxve:index/vmLegacy:VmLegacy", "hub-hub-vm").inputs["operatingSystem"]["type"] = "linux"
    return "/qemu/100/config"


CORRUPTIONS: dict[str, Callable[[list[Resource]], str]] = {
    "pool id with invalid characters": _bad_pool_id,
    "firewall rule with unknown macro": _bad_macro,
    "firewall rule with unknown proto": _bad_proto,
    "rule naming an undeclared ipset": _undeclared_ipset,
    "privilege that does not exist (replay-side)": _bad_privilege,
    "role id with invalid characters": _bad_role_id,
    "ACL naming an undeclared role (replay-side)": _acl_unknown_role,
    "user id without realm": _bad_user_id,
    "VM cloned into an undeclared pool": _vm_into_unknown_pool,
    "VM rule naming an undeclared security group (replay-side)": _bad_vm_group,
    "subnet gateway that is not an address": _bad_subnet_gateway,
    "VM config with an unknown ostype": _bad_vm_ostype,
}


@pytest.mark.parametrize("case", sorted(CORRUPTIONS))
def test_one_corrupted_input_is_refused(case: str, prod_exp: Run, fakepve: Any, fakepve_cafile: str) -> None:
    resources = copy.deepcopy(prod_exp.resources)
    expect = CORRUPTIONS[case](resources)
    out = _replay(resources, fakepve, fakepve_cafile, prod_exp.stack)
    assert out.refused, f"{case}: every request was accepted"
    assert any(expect in line for line in out.refused), out.refused
