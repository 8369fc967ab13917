"""Who may reach the Proxmox API: the Hubs (experimental hubs included), never task VMs.

An experimental hub is a Hub on an isolated vnet: it checkpoints its own VM through the Proxmox API
with its own token. Its security group `<zone>-xhub` is the task policy plus tcp/8006 to
`hub:network.proxmoxApi`; task VMs keep `<zone>-task`, which reaches neither the API nor management.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from hubinfra.stack import EXIT_ERROR_REPORTED
from tests.hubinfra.harness import Run, run_program, stack_config

GROUP = "proxmoxve:cluster/firewall/security/groupLegacy:GroupLegacy"
RULES = "proxmoxve:firewall/rulesLegacy:RulesLegacy"
IPSET = "proxmoxve:firewall/ipsetLegacy:IpsetLegacy"
SUBNET = "proxmoxve:sdn/subnet:Subnet"
CLOUD_INIT = "pulumi-python:dynamic:Resource"
API = "8006"

Net = ipaddress.IPv4Network


def _zone(run: Run) -> str:
    return "hubdev" if run.stack == "dev" else "hubprod"


def _group(run: Run, name: str) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = run.one(GROUP, f"group-{name.rsplit('-', 1)[1]}").inputs["rules"]
    assert run.one(GROUP, f"group-{name.rsplit('-', 1)[1]}").inputs["name"] == name
    return rules


def _cluster_rules(run: Run) -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = run.one(RULES, "cluster-rules").inputs["rules"]
    return rules


def _ipsets(run: Run) -> dict[str, list[Net]]:
    return {
        i.inputs["name"]: [ipaddress.IPv4Network(c["name"]) for c in i.inputs["cidrs"]]
        for i in run.of_type(IPSET)
    }


def _resolve(run: Run, ref: str) -> list[Net]:
    """A rule's source/dest: `+ipset` or a literal CIDR."""
    if ref.startswith("+"):
        return _ipsets(run)[ref[1:]]
    return [ipaddress.IPv4Network(ref)]


def _configured_api(run: Run) -> list[Net]:
    return [ipaddress.IPv4Network(a) for a in stack_config(run.stack)["hub:network"]["proxmoxApi"]]


def _task_networks(run: Run) -> list[Net]:
    """The task vnets and every isolated vnet (experimental hubs' and domain hubs' task VMs)."""
    return _ipsets(run)[f"{_zone(run)}-tasks"]


def _experimental_hub_addresses(run: Run) -> set[Net]:
    """Each experimental hub's own address, as CloneCloudInit gives it (`ipconfig0`)."""
    out: set[Net] = set()
    for init in run.dynamic("cloud-init"):
        ip = init.inputs["ipconfig0"].split(",")[0].removeprefix("ip=")
        out.add(ipaddress.IPv4Network(ipaddress.IPv4Interface(ip).ip))
    return out


def _overlaps(a: list[Net], b: list[Net]) -> bool:
    return any(x.overlaps(y) for x in a for y in b)


@pytest.mark.parametrize("fixture", ["dev_exp", "prod_exp"])
def test_experimental_hub_group_allows_the_api_only_to_proxmox_api(
    request: pytest.FixtureRequest, fixture: str
) -> None:
    run: Run = request.getfixturevalue(fixture)
    zone = _zone(run)
    xhub = _group(run, f"{zone}-xhub")
    task = _group(run, f"{zone}-task")
    api_rules = [r for r in xhub if r.get("dport") == API]
    assert len(api_rules) == 1
    (api,) = api_rules
    assert (api["type"], api["action"], api["proto"]) == ("out", "ACCEPT", "tcp")
    assert api["dest"] == f"+{zone}-pveapi"
    assert sorted(_resolve(run, api["dest"])) == sorted(_configured_api(run))
    # Nothing else new: the rest is exactly the task policy (management drop first, listed egress,
    # catch-all drop last), and the API accept precedes the drops that would shadow it.
    assert xhub == [api, *task]
    last = xhub[-1]
    assert (last["type"], last["action"]) == ("out", "DROP") and "dest" not in last
    # Every experimental hub uses this group, none the task group.
    experiments = [r for r in run.of_type(RULES) if "-exp-" in r.name]
    assert experiments
    for fw in experiments:
        assert fw.inputs["rules"] == [
            {"securityGroup": f"{zone}-xhub", "comment": f"hub policy: {zone}-xhub"}
        ]


@pytest.mark.parametrize("fixture", ["dev", "prod", "prod_exp"])
def test_task_group_never_accepts_the_api_or_management(request: pytest.FixtureRequest, fixture: str) -> None:
    run: Run = request.getfixturevalue(fixture)
    zone = _zone(run)
    task = _group(run, f"{zone}-task")
    mgmt = _ipsets(run)[f"{zone}-mgmt"]
    api = _configured_api(run)
    accepts = [r for r in task if r["action"] == "ACCEPT"]
    assert accepts
    for rule in accepts:
        assert rule["type"] == "out" and rule.get("dport") != API, rule
        assert "dest" in rule, f"an accept without dest opens everything: {rule}"
        dest = _resolve(run, rule["dest"])
        assert not _overlaps(dest, mgmt), rule
        assert not _overlaps(dest, api), rule
    # The runtime puts task VMs in `<zone>-task`; no VM the stack declares is a task VM, and no
    # per-VM rule set adds anything beyond one security group.
    for fw in run.of_type(RULES):
        if fw.name.endswith("-fw-rules"):
            assert [set(r) for r in fw.inputs["rules"]] == [{"securityGroup", "comment"}]


@pytest.mark.parametrize("fixture", ["dev", "prod", "prod_exp"])
def test_no_accept_lets_a_task_network_into_management(request: pytest.FixtureRequest, fixture: str) -> None:
    run: Run = request.getfixturevalue(fixture)
    zone = _zone(run)
    mgmt = _ipsets(run)[f"{zone}-mgmt"]
    tasks = _task_networks(run)
    xhubs = _experimental_hub_addresses(run)
    api = _configured_api(run)
    rules = [(g.inputs["name"], r) for g in run.of_type(GROUP) for r in g.inputs["rules"]]
    rules += [(r.name, rule) for r in run.of_type(RULES) for rule in r.inputs["rules"]]
    for owner, rule in rules:
        if rule.get("action") != "ACCEPT":
            continue
        if rule["type"] == "in":
            # Inbound: from management, or (the Proxmox API on the hosts only) from an experimental
            # hub's own /32; never from a task network, never without a source.
            assert "source" in rule, (owner, rule)
            source = _resolve(run, rule["source"])
            if _overlaps(source, tasks):
                assert owner.endswith("cluster-rules") and rule["dport"] == API, (owner, rule)
                assert set(source) <= xhubs and all(s.num_addresses == 1 for s in source), (owner, rule)
                assert sorted(_resolve(run, rule["dest"])) == sorted(api), (owner, rule)
            else:
                assert source == mgmt, (owner, rule)
        else:
            # Outbound from task VMs and experimental hubs: into management only the API port of
            # the listed node addresses.
            dest = _resolve(run, rule["dest"])
            if _overlaps(dest, mgmt):
                assert owner == f"{zone}-xhub" and rule["dport"] == API, (owner, rule)
                assert all(d.num_addresses == 1 for d in dest if _overlaps([d], mgmt)), (owner, rule)


def test_cluster_firewall_opens_the_api_to_experimental_hubs_not_task_networks(prod_exp: Run) -> None:
    rules = _cluster_rules(prod_exp)
    api = [r for r in rules if r.get("dport") == API and r["action"] == "ACCEPT"]
    assert {r["source"] for r in api} == {"+hubprod-mgmt", "+hubprod-xhubs"}
    xhub_rule = next(r for r in api if r["source"] == "+hubprod-xhubs")
    assert (xhub_rule["type"], xhub_rule["proto"], xhub_rule["dest"]) == ("in", "tcp", "+hubprod-pveapi")
    # Exactly the experimental hub's own address on its isolated /24: the clone's ipconfig0.
    xhubs = _resolve(prod_exp, "+hubprod-xhubs")
    alpha = ipaddress.IPv4Network(
        prod_exp.one(SUBNET, f"subnet-{prod_exp.outputs['network']['isolated']['alpha']}").inputs["cidr"]
    )
    assert xhubs == [ipaddress.IPv4Network(alpha.network_address + 10)]
    assert set(xhubs) == _experimental_hub_addresses(prod_exp)
    # Not the task vnets, not the domain hub's isolated vnet (its task VMs live there).
    acme = prod_exp.outputs["network"]["isolated"]["acme"]
    not_hubs = [
        ipaddress.IPv4Network(prod_exp.one(SUBNET, f"subnet-{v}").inputs["cidr"])
        for v in ("hptask1", "hptask2", acme)
    ]
    assert not _overlaps(xhubs, not_hubs)
    # First match wins: both API accepts come before the drop of every task and isolated network.
    drop = next(
        i for i, r in enumerate(rules) if r["action"] == "DROP" and r.get("source") == "+hubprod-tasks"
    )
    assert all(rules.index(r) < drop for r in api)


def test_without_experiments_the_hosts_open_the_api_to_management_only(prod: Run) -> None:
    api = [r for r in _cluster_rules(prod) if r.get("dport") == API and r["action"] == "ACCEPT"]
    assert [r["source"] for r in api] == ["+hubprod-mgmt"]
    assert "hubprod-xhubs" not in _ipsets(prod)


def test_experiments_without_proxmox_api_fail_at_once_naming_the_key() -> None:
    def drop(config: dict[str, Any]) -> None:
        del config["hub:network"]["proxmoxApi"]

    def drop_with_experiment(config: dict[str, Any]) -> None:
        drop(config)
        config["hub:experiments"] = [{"name": "faster-gate", "checkpoint": "hub-" + "0" * 32, "vmId": 1150}]

    run = run_program("dev", edit=drop_with_experiment)
    assert run.exit_code == EXIT_ERROR_REPORTED
    assert len(run.errors) == 1 and "\n" not in run.errors[0]
    assert run.errors[0].startswith("hub:network.proxmoxApi: required when hub:experiments is not empty")
    assert run.resources == []

    # Without experiments the key is optional, and then there is no experimental hub group at all.
    def neither(config: dict[str, Any]) -> None:
        drop(config)
        config["hub:experiments"] = []

    quiet = run_program("dev", edit=neither)
    assert quiet.exit_code is None, quiet.errors
    assert not [g for g in quiet.of_type(GROUP) if g.inputs["name"] == "hubdev-xhub"]
