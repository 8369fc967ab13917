"""HubNetwork: the management vnet, the isolated task vnets, and the firewall that keeps them apart.

Design choice: Proxmox SDN (one VLAN zone on an existing bridge, one vnet per network) rather than
Linux VLAN interfaces. SDN objects are cluster-wide and declared through the API, so every node sees
the same networks without editing /etc/network/interfaces (which would need Sys.Modify and a reload
per node), and each vnet has its own ACL path (`/sdn/zones/<zone>/<vnet>`) so the Hub's token gets
SDN.Use on exactly the vnets it attaches task VMs to, never on the management vnet.

Firewall (default policy DROP everywhere the stack decides it):
- ipsets `<zone>-mgmt`, `<zone>-tasks` (task vnets and every isolated hub vnet), `<zone>-egress`,
  `<zone>-pveapi` (`network.proxmoxApi`) and `<zone>-xhubs` (each experimental hub's own address);
- security group `<zone>-hub` for Hub VMs: the API (443) and SSH only from management; anything from a
  task network dropped first;
- security group `<zone>-task` for task VMs: anything to management dropped first, then only the
  listed egress endpoints accepted, then everything else dropped;
- security group `<zone>-xhub` for experimental hubs (a Hub on an isolated vnet): tcp/8006 to
  `<zone>-pveapi` accepted first, then exactly the `<zone>-task` rules. An experimental hub
  checkpoints its own VM through the API; task VMs must never reach it, so they keep `<zone>-task`;
- with `manageClusterFirewall`, the cluster firewall is enabled with input DROP and the Proxmox API
  (8006) is opened to the management network and to the experimental hubs' own addresses, never to
  a task network. PVE itself always accepts 8006/22 (and VNC, SPICE, migration) from its built-in
  `management` ipset (pve-firewall src/PVE/Firewall.pm ruleset_generate_rule... "allow standard
  traffic for management ipset"), to which it appends the node's local network (the `push` onto
  `ipset->{management}` in Firewall.pm compile): the stack declares that ipset explicitly (management
  network + `operatorAccess`), and a guard refuses, at `pulumi up`, to enable input DROP over
  existing datacenter rules or over the operator's own connection.

SDN zone and vnets are `SdnObject`s (hubinfra.pve_objects), not the provider's `sdn.zone.Vlan` /
`sdn.Vnet`, whose create panics in pulumi-proxmoxve (see that module). `isolate-ports` sets the
bridge ports' `isolated` flag on each node's local bridge (pve-network src/PVE/Network/SDN/Zones/
Plugin.pm: `$opts->{isolation} = 1 if $vnet->{'isolate-ports'}`), so it separates only guests on
the SAME node: two task VMs on different nodes meet on the VLAN. The firewall groups below are the
real boundary; port isolation is a second layer on one node.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve
from pulumi_proxmoxve.cluster.firewall.security import GroupLegacyRuleArgs
from pulumi_proxmoxve.firewall import IpsetLegacyCidrArgs, RulesLegacyRuleArgs

from hubinfra.config import ConfigError, NetworkConfig, StackConfig, Vnet
from hubinfra.pve_objects import ClusterFirewallGuard, SdnObject

PROXMOX_API_PORT = "8006"
# PVE's built-in ipset: the hosts accept the API, SSH, console and migration from it before any rule.
MANAGEMENT_IPSET = "management"
# Host part of a hub's address on its own isolated /24 (.1 is the gateway).
HUB_HOST_OFFSET = 10


@dataclass(frozen=True, slots=True)
class IsolatedNet:
    """The vnet of one experiment or domain hub, derived from its vmId so it never moves."""

    owner: str
    vnet: str
    vlan_tag: int
    cidr: str
    gateway: str
    # An experimental hub lives ON its vnet (and needs the Proxmox API); a domain hub sits on
    # management and its vnet holds only its task VMs.
    experimental: bool = False

    @property
    def hub_address(self) -> str:
        """The experimental hub's fixed address on this network (its `ipconfig0`)."""
        return str(ipaddress.ip_network(self.cidr).network_address + HUB_HOST_OFFSET)


def _base36(value: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        value, rest = divmod(value, 36)
        out = digits[rest] + out
        if value == 0:
            return out


def isolated_nets(config: StackConfig) -> dict[str, IsolatedNet]:
    """Allocate a vnet id, VLAN tag and /24 for each experiment and domain hub.

    The slot is the hub's vmId modulo the room available, so adding or removing a hub never moves
    another one's network (which would replace it). A collision is a config error naming both hubs.
    """
    net = config.network
    prefix = ipaddress.ip_network(net.isolated_prefix)
    subnets_available = 2 ** max(0, 24 - prefix.prefixlen) if prefix.prefixlen <= 24 else 0
    if subnets_available == 0:
        raise ConfigError("hub:network.isolatedPrefix: must be /24 or larger")
    room = min(net.isolated_vlans.end - net.isolated_vlans.start + 1, subnets_available)
    owners = [(f"experiments[{i}]", e.name, e.vm_id, True) for i, e in enumerate(config.experiments)]
    owners += [(f"domainHubs[{i}]", d.name, d.vm_id, False) for i, d in enumerate(config.domain_hubs)]
    taken: dict[int, str] = {}
    out: dict[str, IsolatedNet] = {}
    for where, name, vm_id, experimental in owners:
        slot = vm_id % room
        if slot in taken:
            raise ConfigError(
                f"hub:{where}.vmId: {vm_id} lands on the same isolated network slot as {taken[slot]} "
                f"(slot = vmId mod {room}); pick another vmId"
            )
        taken[slot] = where
        subnet = ipaddress.ip_network((int(prefix.network_address) + slot * 256, 24))
        out[name] = IsolatedNet(
            owner=name,
            vnet=f"x{_base36(vm_id)}",
            vlan_tag=net.isolated_vlans.start + slot,
            cidr=str(subnet),
            gateway=str(subnet.network_address + 1),
            experimental=experimental,
        )
    return out


def _short(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:6]


class HubNetwork(pulumi.ComponentResource):
    """The SDN zone and vnets, ipsets, security groups and (optionally) the cluster firewall."""

    zone_id: pulumi.Output[str]
    management_vnet: str
    task_vnets: list[str]
    isolated: dict[str, IsolatedNet]
    hub_group: str
    sdn_digest: str
    task_group: str
    xhub_group: str
    # What "the network is ready" means to a VM: the resources that, directly or through their own
    # dependencies, wait for every child of this component (the Applier waits for the zone, vnets
    # and subnets; the groups for the ipsets; the cluster firewall for the management ipset and the
    # guard). Depend on these, not on the component: `depends_on=[network]` makes the SDK expand the
    # component into all its children for every dependent (pulumi sdk/python/lib/pulumi/runtime/
    # _depends_on.py, `_resolve_depends_on_urns` over `_with_transitive_deps`), O(hubs) each and so
    # O(hubs^2) for the stack, while this list has a fixed size and enforces the same order.
    ready: list[pulumi.Resource]

    def __init__(
        self,
        name: str,
        *,
        config: NetworkConfig,
        nodes: Sequence[str],
        isolated: dict[str, IsolatedNet],
        access: Mapping[str, Any],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hub:network:HubNetwork", name, None, opts)
        self._zone = config.zone
        child = pulumi.ResourceOptions(parent=self)
        zone_id = config.zone
        zone = SdnObject(
            f"{name}-zone",
            access=access,
            kind="zones",
            object_id=zone_id,
            params={"type": "vlan", "bridge": config.bridge, "nodes": ",".join(nodes)},
            opts=child,
        )
        vnets: list[pulumi.Resource] = []
        declared: list[str] = [f"zone={zone_id} bridge={config.bridge} nodes={','.join(nodes)}"]

        def declare(vnet: Vnet | IsolatedNet, alias: str, *, isolate_ports: bool) -> SdnObject:
            resource = SdnObject(
                f"{name}-vnet-{vnet.vnet}",
                access=access,
                kind="vnets",
                object_id=vnet.vnet,
                # Through the zone's output: the vnet is created after its zone, deleted before it.
                params={
                    "zone": zone.object_id,
                    "tag": vnet.vlan_tag,
                    "alias": alias[:256],
                    # Same-node port isolation only (see the module docstring): not a boundary.
                    "isolate-ports": int(isolate_ports),
                },
                opts=child,
            )
            subnet = proxmoxve.sdn.Subnet(
                f"{name}-subnet-{vnet.vnet}",
                vnet=resource.object_id,
                cidr=vnet.cidr,
                gateway=vnet.gateway,
                # No SNAT: task traffic leaves only through the firewall's listed egress.
                snat=False,
                opts=child,
            )
            vnets.extend([resource, subnet])
            declared.append(
                f"{vnet.vnet} tag={vnet.vlan_tag} cidr={vnet.cidr} gw={vnet.gateway} iso={isolate_ports}"
            )
            return resource

        declare(config.management, "hub management", isolate_ports=False)
        for task in config.tasks:
            declare(task, "hub task network (isolated)", isolate_ports=True)
        for net in isolated.values():
            declare(net, f"hub isolated network for {net.owner}", isolate_ports=True)
        # SDN changes stay pending until applied, and the Applier applies only when it is created (or
        # destroyed). Replacing it whenever the declared SDN changes makes a vnet added for a new
        # experiment or domain hub exist on the nodes in the same `pulumi up` that clones onto it.
        self.sdn_digest = hashlib.sha256("\n".join(sorted(declared)).encode()).hexdigest()
        applier = proxmoxve.sdn.Applier(
            f"{name}-apply",
            opts=pulumi.ResourceOptions(parent=self, depends_on=vnets, replacement_trigger=self.sdn_digest),
        )

        mgmt_set, task_set, egress_set = f"{zone_id}-mgmt", f"{zone_id}-tasks", f"{zone_id}-egress"
        api_set, xhubs_set = f"{zone_id}-pveapi", f"{zone_id}-xhubs"
        task_cidrs = [t.cidr for t in config.tasks] + [n.cidr for n in isolated.values()]
        # Only the experimental hubs themselves (a /32 each), not their /24: anything else on that
        # vnet is a task network and must not reach the hosts.
        xhub_addresses = [f"{n.hub_address}/32" for n in isolated.values() if n.experimental]
        ipsets = [
            proxmoxve.firewall.IpsetLegacy(
                f"{name}-ipset-{set_name}",
                name=set_name,
                comment=comment,
                cidrs=[IpsetLegacyCidrArgs(name=cidr) for cidr in cidrs],
                opts=child,
            )
            for set_name, cidrs, comment in (
                (mgmt_set, [config.management.cidr], "Hub management network"),
                (task_set, task_cidrs, "Hub task and isolated hub networks"),
                (egress_set, [e.cidr for e in config.allowed_egress], "endpoints task VMs may reach"),
                (api_set, list(config.proxmox_api), "Proxmox API of the nodes (experimental hubs reach it)"),
                (xhubs_set, xhub_addresses, "experimental hubs' own addresses (Proxmox API clients)"),
            )
            if cidrs
        ]
        after_ipsets = pulumi.ResourceOptions(parent=self, depends_on=list(ipsets))
        self.ready = [applier]
        self.hub_group = f"{zone_id}-hub"
        self.task_group = f"{zone_id}-task"
        hub_group = proxmoxve.cluster.firewall.security.GroupLegacy(
            f"{name}-group-hub",
            name=self.hub_group,
            comment="Hub VMs: API and SSH from management only",
            rules=hub_group_rules(mgmt_set=mgmt_set, task_set=task_set),
            opts=after_ipsets,
        )
        task_group = proxmoxve.cluster.firewall.security.GroupLegacy(
            f"{name}-group-task",
            name=self.task_group,
            comment="Task VMs: no management, no Proxmox API, listed egress only",
            rules=task_group_rules(mgmt_set=mgmt_set, config=config),
            opts=after_ipsets,
        )
        self.ready += [hub_group, task_group]
        self.xhub_group = f"{zone_id}-xhub"
        if config.proxmox_api:
            xhub_group = proxmoxve.cluster.firewall.security.GroupLegacy(
                f"{name}-group-xhub",
                name=self.xhub_group,
                comment="Experimental hubs: the task policy plus the Proxmox API (their own checkpoints)",
                rules=xhub_group_rules(mgmt_set=mgmt_set, api_set=api_set, config=config),
                opts=after_ipsets,
            )
            self.ready.append(xhub_group)
        if config.manage_cluster_firewall:
            # PVE accepts 8006/22 from `management` before any rule of ours: say who is in it.
            operator_cidrs = [config.management.cidr, *config.operator_access]
            management = proxmoxve.firewall.IpsetLegacy(
                f"{name}-ipset-management",
                name=MANAGEMENT_IPSET,
                comment="PVE's built-in management set: API, SSH, console (declared by the Hub stack)",
                cidrs=[IpsetLegacyCidrArgs(name=cidr) for cidr in operator_cidrs],
                opts=child,
            )
            guard = ClusterFirewallGuard(
                f"{name}-cluster-firewall-guard", access=access, allowed=operator_cidrs, opts=child
            )
            pulumi.log.warn(
                "hub:network.manageClusterFirewall sets input DROP on every host: only "
                f"{', '.join(operator_cidrs)} (and each node's own local network, which PVE adds) keep the "
                "API and SSH; `pulumi up` refuses if this machine is outside them"
            )
            after_ipsets = pulumi.ResourceOptions(parent=self, depends_on=[*ipsets, management, guard])
            cluster_firewall = proxmoxve.cluster.FirewallLegacy(
                f"{name}-cluster-firewall",
                enabled=True,
                input_policy="DROP",
                output_policy="ACCEPT",
                opts=after_ipsets,
            )
            cluster_rules = proxmoxve.firewall.RulesLegacy(
                f"{name}-cluster-rules",
                rules=[
                    RulesLegacyRuleArgs(
                        type="in",
                        action="ACCEPT",
                        proto="tcp",
                        dport=PROXMOX_API_PORT,
                        source=f"+{mgmt_set}",
                        comment="Proxmox API for the Hub (management network only)",
                    ),
                    *(
                        [
                            RulesLegacyRuleArgs(
                                type="in",
                                action="ACCEPT",
                                proto="tcp",
                                dport=PROXMOX_API_PORT,
                                source=f"+{xhubs_set}",
                                dest=f"+{api_set}",
                                comment="Proxmox API for experimental hubs (their own addresses only)",
                            )
                        ]
                        if xhub_addresses
                        else []
                    ),
                    RulesLegacyRuleArgs(
                        type="in",
                        action="DROP",
                        source=f"+{task_set}",
                        comment="task networks never reach the hosts",
                        log="info",
                    ),
                ],
                opts=after_ipsets,
            )
            self.ready += [cluster_firewall, cluster_rules]

        self.zone_id = zone.object_id
        self.management_vnet = config.management.vnet
        self.task_vnets = [t.vnet for t in config.tasks]
        self.isolated = isolated
        self.register_outputs(
            {
                "zone_id": self.zone_id,
                "management_vnet": self.management_vnet,
                "task_vnets": self.task_vnets,
                "isolated_vnets": {k: v.vnet for k, v in isolated.items()},
            }
        )

    def vnet_path(self, vnet: str) -> str:
        """The ACL path for SDN.Use on one vnet."""
        return f"/sdn/zones/{self._zone}/{vnet}"

    def vm_firewall(
        self,
        name: str,
        *,
        vm: pulumi.Resource,
        vm_id: int,
        node: str,
        group: str,
        outbound: str,
        parent: pulumi.Resource,
        address: str | None = None,
    ) -> list[pulumi.Resource]:
        """Per-VM firewall: enabled, default DROP inbound, and the given security group.

        Anti-spoofing: PVE's ``ipfilter`` drops a VM's traffic from any source address not in its
        ``ipfilter-net0`` ipset, and for a VM (unlike a container) it adds no address of its own:
        turned on without the set, it would cut the VM off. So the filter is on exactly when the
        VM's address is known (a static address), with the set declared; a DHCP VM keeps the MAC
        filter only.
        """
        opts = pulumi.ResourceOptions(parent=parent, depends_on=[vm])
        declared: list[pulumi.Resource] = []
        if address is not None:
            host = str(ipaddress.ip_interface(address).ip)
            declared.append(
                proxmoxve.firewall.IpsetLegacy(
                    f"{name}-ipfilter",
                    node_name=node,
                    vm_id=vm_id,
                    name="ipfilter-net0",
                    comment="the only source address net0 may use",
                    cidrs=[IpsetLegacyCidrArgs(name=host, comment="this VM")],
                    opts=opts,
                )
            )
        options = proxmoxve.firewall.OptionsLegacy(
            f"{name}-fw-options",
            node_name=node,
            vm_id=vm_id,
            enabled=True,
            input_policy="DROP",
            output_policy=outbound,
            dhcp=True,
            ipfilter=address is not None,
            macfilter=True,
            opts=pulumi.ResourceOptions(parent=parent, depends_on=[vm, *declared]),
        )
        rules = proxmoxve.firewall.RulesLegacy(
            f"{name}-fw-rules",
            node_name=node,
            vm_id=vm_id,
            rules=[RulesLegacyRuleArgs(security_group=group, comment=f"hub policy: {group}")],
            opts=opts,
        )
        return [*declared, options, rules]


def hub_group_rules(*, mgmt_set: str, task_set: str) -> list[GroupLegacyRuleArgs]:
    return [
        GroupLegacyRuleArgs(
            type="in",
            action="DROP",
            source=f"+{task_set}",
            comment="task networks never reach a Hub",
            log="info",
        ),
        GroupLegacyRuleArgs(
            type="in",
            action="ACCEPT",
            proto="tcp",
            dport="443",
            source=f"+{mgmt_set}",
            comment="Hub API (nginx)",
        ),
        GroupLegacyRuleArgs(
            type="in", action="ACCEPT", proto="tcp", dport="22", source=f"+{mgmt_set}", comment="operator SSH"
        ),
    ]


def task_group_rules(*, mgmt_set: str, config: NetworkConfig) -> list[GroupLegacyRuleArgs]:
    rules = [
        GroupLegacyRuleArgs(
            type="out", action="DROP", dest=f"+{mgmt_set}", comment="no route to management", log="info"
        ),
        GroupLegacyRuleArgs(
            type="in", action="DROP", source=f"+{mgmt_set}", comment="management does not enter task VMs"
        ),
    ]
    rules += [
        GroupLegacyRuleArgs(
            type="out",
            action="ACCEPT",
            proto=endpoint.proto,
            dport=endpoint.ports,
            dest=endpoint.cidr,
            comment=endpoint.comment or f"allowed egress {_short(endpoint.cidr)}",
        )
        for endpoint in config.allowed_egress
    ]
    # Last: everything not listed is dropped by the group itself, so a VM in this group has no
    # internet even if its own output policy was left at ACCEPT.
    rules.append(
        GroupLegacyRuleArgs(
            type="out", action="DROP", comment="no egress except the listed endpoints", log="info"
        )
    )
    return rules


def xhub_group_rules(*, mgmt_set: str, api_set: str, config: NetworkConfig) -> list[GroupLegacyRuleArgs]:
    """An experimental hub: the task VM policy, plus the one thing a Hub needs, the Proxmox API.

    The API accept comes FIRST: the nodes' API addresses may lie inside management (config allows
    single /32 node addresses there), and the task policy's first rule drops anything to management.
    It is narrow (tcp, 8006, `network.proxmoxApi` only), so it opens no other management host.
    """
    api = GroupLegacyRuleArgs(
        type="out",
        action="ACCEPT",
        proto="tcp",
        dport=PROXMOX_API_PORT,
        dest=f"+{api_set}",
        comment="Proxmox API: an experimental hub checkpoints its own VM",
    )
    return [api, *task_group_rules(mgmt_set=mgmt_set, config=config)]
