"""The resource graph of the real program for the dev and prod stacks (Pulumi mocks)."""

from __future__ import annotations

import ipaddress
import re
from typing import Any

import pytest
import yaml

from hubinfra.cloudinit import DEPLOY_FILES, REPO_ROOT, SETTINGS_PATH, parse_user_data
from hubinfra.privileges import FORBIDDEN_PRIVILEGES, all_privileges
from tests.hubinfra.harness import TOKEN_SECRET, Run, run_program

VM = "proxmoxve:index/vmLegacy:VmLegacy"
FILE = "proxmoxve:index/fileLegacy:FileLegacy"
ACL = "proxmoxve:index/acl:Acl"
ROLE = "proxmoxve:index/roleLegacy:RoleLegacy"
TOKEN = "proxmoxve:user/token:Token"
CLONE = "proxmoxve:cloned/vm:Vm"
GROUP = "proxmoxve:cluster/firewall/security/groupLegacy:GroupLegacy"
RULES = "proxmoxve:firewall/rulesLegacy:RulesLegacy"
OPTIONS = "proxmoxve:firewall/optionsLegacy:OptionsLegacy"
IPSET = "proxmoxve:firewall/ipsetLegacy:IpsetLegacy"
VNET = "proxmoxve:sdn/vnet:Vnet"
DYNAMIC = "pulumi-python:dynamic:Resource"
APPLIER = "proxmoxve:sdn/applier:Applier"


def user_data(run: Run, vm_name: str) -> dict[str, Any]:
    snippet = run.one(FILE, f"{vm_name}-user-data")
    assert "sourceRaw" in snippet.secret_inputs, "user data carries the token: it must be a secret"
    return parse_user_data(snippet.inputs["sourceRaw"]["data"])


def settings_of(document: dict[str, Any]) -> dict[str, Any]:
    files = {f["path"]: f for f in document["write_files"]}
    assert files[SETTINGS_PATH]["permissions"] == "0600"
    loaded: dict[str, Any] = yaml.safe_load(files[SETTINGS_PATH]["content"])
    return loaded


@pytest.mark.parametrize(
    ("stack", "cores", "memory", "disk", "protected"),
    [("dev", 4, 8192, 50, False), ("prod", 8, 16384, 200, True)],
)
def test_hub_vm_sizing_and_safety_follow_the_stack(
    request: pytest.FixtureRequest, stack: str, cores: int, memory: int, disk: int, protected: bool
) -> None:
    run: Run = request.getfixturevalue(stack)
    vm = run.one(VM, "hub-hub-vm").inputs
    assert vm["cpu"]["cores"] == cores
    assert vm["memory"]["dedicated"] == memory
    assert vm["disks"][0]["size"] == disk
    assert vm["protection"] is protected
    assert vm["onBoot"] is protected
    assert vm["agent"]["enabled"] is True
    assert vm["clone"] == {"vmId": 9000, "full": True, "datastoreId": vm["disks"][0]["datastoreId"]}
    assert re.search(
        rf"snippets/{vm['name']}-user-data-[0-9a-f]{{12}}\.yaml$", vm["initialization"]["userDataFileId"]
    )
    assert vm["networkDevices"][0]["firewall"] is True


def test_dev_settings_file(dev: Run) -> None:
    settings = settings_of(user_data(dev, "hub-hub"))
    assert settings["environment"] == "development"
    assert settings["checkpoint_schedule"] == "manual"
    assert settings["vmid"] == 1100
    assert settings["node"] == "pve-dev"
    assert settings["hub_type"] == "development"
    assert settings["proxmox_api_token"] == f"hub-dev@pve!hub-dev={TOKEN_SECRET}"
    assert settings["proxmox_url"] == "https://pve-dev.example.internal:8006"
    assert settings["database_url"].startswith("postgresql+psycopg://")
    assert settings["params"] == {"health_interval_seconds": 30}


def test_prod_settings_file(prod: Run) -> None:
    settings = settings_of(user_data(prod, "hub-hub"))
    assert settings["environment"] == "production"
    assert settings["checkpoint_schedule"] == "0 0 * * *"
    assert (settings["keep_last"], settings["keep_daily"], settings["keep_weekly"]) == (3, 14, 8)
    assert settings["keep_monthly"] == 6
    assert settings["proxmox_insecure"] is False
    assert settings["vmid"] == 100
    assert settings["proxmox_api_token"] == f"hub@pve!hub-prod={TOKEN_SECRET}"
    assert "experiment" not in settings


def test_cloud_init_installs_the_repo_deploy_files(prod: Run) -> None:
    document = user_data(prod, "hub-hub")
    files = {f["path"]: f["content"] for f in document["write_files"]}
    for source, target in DEPLOY_FILES.items():
        assert files[target] == (REPO_ROOT / source).read_text(), f"{target} must be the repo's {source}"
    assert "qemu-guest-agent" in document["packages"]
    assert document["runcmd"] == [["/usr/local/sbin/hub-firstboot"]]
    firstboot = files["/usr/local/sbin/hub-firstboot"]
    assert "systemctl enable --now hub.service" in firstboot
    assert "git -C /opt/hub/src fetch --quiet --depth 1 origin 'main'" in firstboot
    assert "git -C /opt/hub/src checkout --quiet --detach FETCH_HEAD" in firstboot
    assert "pip install" not in firstboot


def test_the_vm_installs_the_runtime_from_the_lock() -> None:
    compose = yaml.safe_load((REPO_ROOT / "deploy" / "compose.yaml").read_text())
    dockerfile = compose["services"]["orchestrator"]["build"]["dockerfile_inline"]
    installs = [line for line in dockerfile.splitlines() if "install" in line or " sync " in line]
    setup_uv = re.search(r"UV_VERSION=(\S+)", (REPO_ROOT / "scripts" / "setup.sh").read_text())
    assert setup_uv is not None
    # The same uv as the lock was made with; every other install is `uv sync --frozen`, without the
    # Pulumi program's default group.
    assert installs[0] == f"RUN pip install --no-cache-dir uv=={setup_uv.group(1)}"
    for line in installs[1:]:
        assert line.startswith("RUN uv sync --frozen --no-default-groups"), line


def test_token_is_privilege_separated_and_exported_only_as_secret(prod: Run) -> None:
    token = prod.one(TOKEN, "hub-hub-access").inputs
    assert token["privilegesSeparation"] is True
    assert "token" in prod.secret_outputs
    assert prod.outputs["tokenId"] == "hub@pve!hub-prod"
    plain = {k: v for k, v in prod.outputs.items() if k not in prod.secret_outputs}
    assert TOKEN_SECRET not in repr(plain)


def test_outputs(prod: Run) -> None:
    assert prod.outputs["hubVmId"] == 100
    assert prod.outputs["node"] == "pve1"
    assert prod.outputs["addresses"] == ["10.20.0.10"]
    assert prod.outputs["pool"] == "hub-prod"
    assert prod.outputs["network"]["tasks"] == ["hptask1", "hptask2"]


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_role_privileges_come_from_the_list_and_exclude_dangerous_ones(
    request: pytest.FixtureRequest, stack: str
) -> None:
    run: Run = request.getfixturevalue(stack)
    granted = sorted({p for role in run.of_type(ROLE) for p in role.inputs["privileges"]})
    assert granted == all_privileges(pve_major=9)
    for forbidden in FORBIDDEN_PRIVILEGES:
        assert forbidden not in granted
    assert not any(p.startswith(("Realm.", "Permissions.", "User.")) for p in granted)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_acls_are_scoped_never_root(request: pytest.FixtureRequest, stack: str) -> None:
    run: Run = request.getfixturevalue(stack)
    acls = [a.inputs for a in run.of_type(ACL)]
    assert acls
    for acl in acls:
        path = acl["path"]
        assert path != "/"
        assert path.startswith(("/pool/", "/sdn/zones/", "/nodes/")), path
    # Privilege separation: every token ACL has the same user ACL, or the token would get nothing.
    token_grants = {(a["path"], a["roleId"]) for a in acls if "tokenId" in a}
    user_grants = {(a["path"], a["roleId"]) for a in acls if "userId" in a}
    assert token_grants == user_grants


def test_hub_token_may_use_task_vnets_but_not_management(prod: Run) -> None:
    paths = {a.inputs["path"] for a in prod.of_type(ACL) if a.inputs.get("tokenId") == "hub@pve!hub-prod"}
    assert "/sdn/zones/hubprod/hptask1" in paths
    assert not any(p.endswith("/hpmgmt") for p in paths)
    assert "/pool/hub-prod" in paths


def _rules(run: Run) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for res in run.of_type(GROUP) + run.of_type(RULES):
        out += [dict(rule, owner=res.inputs.get("name", res.name)) for rule in res.inputs.get("rules", [])]
    return out


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_firewall_invariants(request: pytest.FixtureRequest, stack: str) -> None:
    run: Run = request.getfixturevalue(stack)
    zone = "hubdev" if stack == "dev" else "hubprod"
    mgmt, tasks = f"+{zone}-mgmt", f"+{zone}-tasks"
    ipsets = {i.inputs["name"]: [c["name"] for c in i.inputs["cidrs"]] for i in run.of_type(IPSET)}
    task_cidrs = set(ipsets[f"{zone}-tasks"])
    rules = _rules(run)
    accepts = [r for r in rules if r.get("action") == "ACCEPT"]
    # No accept rule lets a task network in anywhere (in particular not into management).
    for rule in accepts:
        assert rule.get("source") not in {tasks, *task_cidrs}, rule
    # The Hub's API and SSH are accepted only from the management network.
    hub_accepts = [r for r in accepts if r["owner"] == f"{zone}-hub"]
    assert {r["dport"] for r in hub_accepts} == {"443", "22"}
    assert all(r["source"] == mgmt and r["type"] == "in" for r in hub_accepts)
    # Task VMs: traffic to management dropped before any accept; accepts only to listed egress.
    task_rules = [r for r in rules if r["owner"] == f"{zone}-task"]
    assert task_rules[0] == dict(task_rules[0], type="out", action="DROP", dest=mgmt)
    egress = {r["dest"] for r in task_rules if r.get("action") == "ACCEPT"}
    assert egress == {"151.101.0.0/16"}
    assert all(r["type"] == "out" for r in task_rules if r.get("action") == "ACCEPT")
    # Default deny on every VM firewall the stack declares.
    options = run.of_type(OPTIONS)
    assert options
    for opt in options:
        assert opt.inputs["enabled"] is True
        assert opt.inputs["inputPolicy"] == "DROP"


def test_prod_manages_cluster_firewall_with_default_deny(prod: Run, dev: Run) -> None:
    cluster = prod.one("proxmoxve:cluster/firewallLegacy:FirewallLegacy").inputs
    assert cluster["enabled"] is True
    assert cluster["inputPolicy"] == "DROP"
    host_rules = prod.one(RULES, "cluster-rules").inputs["rules"]
    api_rules = [r for r in host_rules if r.get("dport") == "8006"]
    assert [r["source"] for r in api_rules] == ["+hubprod-mgmt"]
    assert not dev.of_type("proxmoxve:cluster/firewallLegacy:FirewallLegacy")


def test_vnets_are_in_the_zone_and_task_vnets_isolate_ports(prod: Run) -> None:
    # SdnObjects (pve_objects), not the provider's sdn.Vnet, whose create panics.
    assert not prod.of_type(VNET)
    vnets = {
        v.inputs["object_id"]: v.inputs for v in prod.of_type(DYNAMIC) if v.inputs.get("kind") == "vnets"
    }
    assert set(vnets) == {"hpmgmt", "hptask1", "hptask2"}
    assert {v["params"]["zone"] for v in vnets.values()} == {"hubprod"}
    assert vnets["hptask1"]["params"]["isolate-ports"] == 1
    assert vnets["hpmgmt"]["params"]["isolate-ports"] == 0
    assert vnets["hpmgmt"]["params"]["tag"] == 20


def test_experiment_clone_references_source_vm_and_snapshot(dev_exp: Run) -> None:
    dev = dev_exp
    assert not dev.of_type(CLONE), "cloned.Vm panics on create in pulumi-proxmoxve"
    (resource,) = [r for r in dev.dynamic("vm") if "faster-gate" in r.name]
    clone = resource.inputs
    assert clone["source_vmid"] == 1100
    assert clone["snapshot"] == "hub-0123456789abcdef0123456789abcdef"
    assert clone["pool"] == "hub-dev-exp-faster-gate"
    assert clone["vmid"] == 1150
    assert "exp-faster-gate" in clone["tags"]
    assert "experimental" in clone["tags"]
    isolated = dev.outputs["network"]["isolated"]["faster-gate"]
    assert clone["bridge"] == isolated
    fw = dev.one(OPTIONS, "faster-gate").inputs
    assert (fw["vmId"], fw["outputPolicy"]) == (1150, "DROP")
    rules = dev.one(RULES, "faster-gate").inputs["rules"]
    # A Hub, not a task VM: the task policy plus the Proxmox API (see test_api_access.py).
    assert rules == [{"securityGroup": "hubdev-xhub", "comment": "hub policy: hubdev-xhub"}]


def test_experiment_settings_are_experimental_and_secret(dev_exp: Run) -> None:
    dev = dev_exp
    assert "experiments" in dev.secret_outputs
    settings = yaml.safe_load(dev.outputs["experiments"]["faster-gate"]["settings"])
    assert settings["environment"] == "experimental"
    assert settings["experiment"] == "faster-gate"
    assert settings["vmid"] == 1150
    assert settings["params"] == {"health_interval_seconds": 30, "gate_timeout_seconds": 120}
    own = "hub-dev-exp-faster-gate@pve"
    assert settings["proxmox_api_token"].startswith(f"{own}!hub-dev-exp-faster-gate=")
    token_paths = {
        a.inputs["path"]
        for a in dev.of_type(ACL)
        if a.inputs.get("tokenId") == f"{own}!hub-dev-exp-faster-gate"
    }
    # Its pool and its vnet; nothing on a node (Sys.Audit there reads every tenant's tasks).
    assert token_paths == {
        "/pool/hub-dev-exp-faster-gate",
        f"/sdn/zones/hubdev/{dev.outputs['network']['isolated']['faster-gate']}",
    }


@pytest.mark.parametrize("fixture", ["dev_exp", "prod_exp"])
def test_every_acl_has_one_owner(request: pytest.FixtureRequest, fixture: str) -> None:
    """One user per hub: no two ACL resources declare the same (path, user or token, role), so
    removing one hub can never delete another's grant (the shared node ACL of old)."""
    run: Run = request.getfixturevalue(fixture)
    keys = [
        (a.inputs["path"], a.inputs.get("userId") or a.inputs.get("tokenId"), a.inputs["roleId"])
        for a in run.of_type(ACL)
    ]
    assert len(keys) == len(set(keys))
    users = [u.inputs["userId"] for u in run.of_type("proxmoxve:index/userLegacy:UserLegacy")]
    assert len(users) == len(set(users)) == len(run.of_type(TOKEN))
    assert not [k for k in keys if k[0].startswith("/nodes/")]


def test_experiments_are_never_protected_even_in_prod() -> None:
    from tests.hubinfra.harness import run_program

    def add_experiment(config: dict[str, Any]) -> None:
        config["hub:experiments"] = [{"name": "alpha", "checkpoint": "hub-" + "a" * 32, "vmId": 2100}]

    run = run_program("prod", edit=add_experiment)
    assert run.exit_code is None, run.errors
    exp = [r for r in run.resources if "alpha" in r.name and r.type.startswith("proxmoxve:")]
    assert exp
    assert not any(r.protect for r in exp)
    (clone,) = [r for r in run.dynamic("vm") if "alpha" in r.name]
    assert clone.inputs["source_vmid"] == 100 and not clone.protect


def test_protection_follows_the_stack(prod: Run, dev: Run) -> None:
    prod_vm = prod.one(VM, "hub-hub-vm")
    assert prod_vm.protect and prod_vm.retain_on_delete
    assert prod.one("proxmoxve:index/poolLegacy:PoolLegacy", "hub-hub-access").protect
    assert all(r.protect for r in prod.of_type(ROLE))
    dev_vm = dev.one(VM, "hub-hub-vm")
    assert not dev_vm.protect and not dev_vm.retain_on_delete


def test_children_are_parented_to_their_components(prod: Run) -> None:
    vm = prod.one(VM, "hub-hub-vm")
    assert vm.parent.endswith("hub:hub_vm:HubVm::hub-hub")
    (zone,) = [r for r in prod.of_type(DYNAMIC) if r.inputs.get("kind") == "zones"]
    assert zone.parent.endswith("hub:network:HubNetwork::hub-network")
    top = [r for r in prod.resources if r.type == "hub:stack:HubStack"]
    assert len(top) == 1
    orphans = [r.name for r in prod.resources if r is not top[0] and "hub:stack:HubStack" not in r.parent]
    assert orphans == []


def _mgmt_cidr(run: Run) -> ipaddress.IPv4Network:
    zone = "hubdev" if run.stack == "dev" else "hubprod"
    ipset = run.one(IPSET, f"ipset-{zone}-mgmt").inputs
    (cidr,) = [c["name"] for c in ipset["cidrs"]]
    return ipaddress.IPv4Network(cidr)


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_every_inbound_accept_comes_from_management_only(request: pytest.FixtureRequest, stack: str) -> None:
    # An ACCEPT without a source accepts from task networks too: the "not from a task net" check
    # alone would miss it.
    run: Run = request.getfixturevalue(stack)
    zone = "hubdev" if stack == "dev" else "hubprod"
    inbound = [r for r in _rules(run) if r.get("action") == "ACCEPT" and r.get("type") == "in"]
    assert inbound
    for rule in inbound:
        assert rule.get("source") == f"+{zone}-mgmt", rule


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_task_group_is_default_deny_and_never_opens_management(
    request: pytest.FixtureRequest, stack: str
) -> None:
    run: Run = request.getfixturevalue(stack)
    zone = "hubdev" if stack == "dev" else "hubprod"
    task_rules = [r for r in _rules(run) if r["owner"] == f"{zone}-task"]
    # First match wins: the management drop comes before any accept, the catch-all drop last.
    last = task_rules[-1]
    assert (last["type"], last["action"]) == ("out", "DROP")
    assert "dest" not in last and "proto" not in last and "dport" not in last
    accepts = [i for i, r in enumerate(task_rules) if r["action"] == "ACCEPT"]
    assert accepts and min(accepts) > 0 and max(accepts) < len(task_rules) - 1
    mgmt = _mgmt_cidr(run)
    for index in accepts:
        rule = task_rules[index]
        assert rule["type"] == "out"
        dest = ipaddress.ip_network(rule["dest"])
        assert not dest.overlaps(mgmt), rule


def test_adding_an_experiment_reapplies_sdn_and_leaves_existing_hubs_untouched(dev_exp: Run) -> None:
    dev = dev_exp
    first = {
        "name": "faster-gate",
        "checkpoint": "hub-0123456789abcdef0123456789abcdef",
        "vmId": 1150,
        "params": {"gate_timeout_seconds": 120},
    }

    def add(config: dict[str, Any]) -> None:
        config["hub:experiments"] = [first, {"name": "second", "checkpoint": "hub-" + "b" * 32, "vmId": 1160}]

    more = run_program("dev", edit=add)
    assert more.exit_code is None, more.errors
    # Spawned: its clone, from the Hub at its checkpoint, on its own vnet.
    (resource,) = [r for r in more.dynamic("vm") if "second" in r.name]
    clone = resource.inputs
    assert (clone["source_vmid"], clone["snapshot"]) == (1100, "hub-" + "b" * 32)
    assert clone["bridge"] == more.outputs["network"]["isolated"]["second"]
    # The Applier only applies on create: it must be replaced when a vnet appears, or the new vnet
    # stays pending and the clone has no bridge to attach to.
    before = dev.one(APPLIER).replacement_trigger
    after = more.one(APPLIER).replacement_trigger
    assert before and after and before != after
    again = run_program("dev", edit=lambda c: c.__setitem__("hub:experiments", [first]))
    assert again.one(APPLIER).replacement_trigger == before, "stable when nothing changes"
    # Nothing already declared moves (no replacement of the existing experiment or the Hub).
    kept = ("faster-gate", "hub-hub")
    old = {(r.type, r.name): r.inputs for r in dev.resources if any(k in r.name for k in kept)}
    new = {(r.type, r.name): r.inputs for r in more.resources if (r.type, r.name) in old}
    assert set(new) == set(old)
    assert new == old


@pytest.mark.parametrize("stack", ["dev", "prod", "prod_exp"])
def test_ip_filter_is_on_only_with_the_vms_own_address_declared(
    request: pytest.FixtureRequest, stack: str
) -> None:
    """PVE's ipfilter drops a VM's traffic from any source not in its ipfilter-net0 set and adds no
    address for a VM by itself: on without the set it would cut the VM off the network."""
    run: Run = request.getfixturevalue(stack)
    sets = {
        (s.inputs["vmId"], s.inputs["name"]): s.inputs for s in run.of_type(IPSET) if s.inputs.get("vmId")
    }
    options = run.of_type(OPTIONS)
    assert options
    for opt in options:
        vm_id = opt.inputs["vmId"]
        declared = sets.get((vm_id, "ipfilter-net0"))
        assert opt.inputs.get("ipfilter", False) is (declared is not None), opt.name
        assert opt.inputs["macfilter"] is True
        if declared is not None:
            (cidr,) = declared["cidrs"]
            assert "/" not in cidr["name"] and ipaddress.ip_address(cidr["name"])
    hub = run.one(VM, "hub-hub-vm").inputs
    address = hub["initialization"]["ipConfigs"][0]["ipv4"]["address"]
    hub_set = sets.get((hub["vmId"], "ipfilter-net0"))
    if address == "dhcp":
        assert hub_set is None
    else:
        assert hub_set is not None and hub_set["cidrs"][0]["name"] == address.split("/")[0]
    for clone in run.of_type(CLONE):
        vm_id = int(clone.inputs["resourceId"])
        clone_set = sets[(vm_id, "ipfilter-net0")]
        assert clone_set["cidrs"][0]["name"].endswith(".10")


def test_pve_version_is_read_from_the_cluster(dev: Run) -> None:
    # The provider's version data source (mocked: 9.0.3) is exported and checked against pveMajor.
    assert dev.outputs["pveVersion"] == "9.0.3"


@pytest.mark.parametrize(
    ("major", "cluster", "message"),
    [
        (9, "8.4.1", "hub:proxmox.pveMajor: is 9, the cluster runs Proxmox VE 8.4.1; set it to 8"),
        (8, "9.0.3", "hub:proxmox.pveMajor: is 8, the cluster runs Proxmox VE 9.0.3; set it to 9"),
        (8, "8.2.4", "hub:proxmox.pveMajor: the cluster runs Proxmox VE 8.2.4; PVE 8 must be 8.3 or newer"),
    ],
)
def test_pve_major_that_does_not_match_the_cluster_is_refused(major: int, cluster: str, message: str) -> None:
    from hubinfra.config import ConfigError

    def edit(config: dict[str, Any]) -> None:
        config["hub:proxmox"]["pveMajor"] = major

    with pytest.raises(ConfigError) as caught:
        run_program("dev", edit=edit, pve_version=cluster)
    assert str(caught.value) == message


def test_pve_8_3_is_accepted() -> None:
    def edit(config: dict[str, Any]) -> None:
        config["hub:proxmox"]["pveMajor"] = 8

    assert run_program("dev", edit=edit, pve_version="8.3.0").outputs["pveVersion"] == "8.3.0"
