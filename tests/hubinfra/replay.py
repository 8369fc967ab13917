"""Replay the API requests the bpg Proxmox provider would make for each recorded resource.

`run_program` records every resource the program declares under mocks, with its inputs; this module
turns each pulumi-proxmoxve resource into the request(s) the provider (bpg/terraform-provider-proxmox,
mirrored at commit d6bd1ffe00c0f2822ff6370b3dcb6e60eb1c3da9) sends on create, and sends them to
fakepve, which checks each one against the PVE 9 API schema and its firewall/pool/clone models.

Each mapping cites the provider file its endpoint and parameter names come from. Fields are sent
form-encoded, as the provider's `url:"..."` tags encode them (booleans as 0/1, lists comma-joined).

fakepve does not store roles, users, tokens or ACLs (those endpoints are schema-checked only), so
the replay keeps that state itself and refuses what PVE refuses there: an unknown privilege name
(PVE::AccessControl::verify_privname), a token for a user that does not exist, an ACL naming a role,
user or token that does not exist; and fakepve does not check that a firewall `group` rule names an
existing security group, which PVE::Firewall does. These are marked "replay-side" in failures.
"""

from __future__ import annotations

import base64
import graphlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import httpx

from tests.hubinfra.harness import DYNAMIC, Resource

# Dynamic providers tested against fakepve elsewhere (tests/hubinfra/test_pve_objects.py,
# test_clone_init.py): recognised by the module their pickled provider comes from.
DYNAMIC_MODULES = (b"hubinfra.pve_objects", b"hubinfra.clone_init")

# Declared types that make no Proxmox API call. Anything else without a mapping fails the replay.
SKIP_TYPES: dict[str, str] = {
    # The provider instance: configuration only, no request.
    "pulumi:providers:proxmoxve": "provider configuration, no API call",
    # Snippets (cloud-init user/meta data) are written over SSH: proxmoxtf/resource/file.go calls
    # capi.SSH().NodeUpload / NodeStreamUpload for non-API content types; PVE's upload API refuses
    # the `snippets` content type.
    "proxmoxve:index/fileLegacy:FileLegacy": "snippet upload over SSH, not an API call",
}
# hub:* types are the program's own ComponentResources (hubinfra/*.py): grouping only, no request.
COMPONENT_PREFIX = "hub:"


@dataclass
class Call:
    method: str
    path: str
    body: dict[str, Any] = field(default_factory=dict[str, Any])
    query: dict[str, str] = field(default_factory=dict[str, str])


class ReplayRefused(Exception):
    """A request PVE would refuse, detected by the replay itself (fakepve keeps no such state)."""


@dataclass
class AccessState:
    """Roles, users and tokens created so far (fakepve's /access endpoints store nothing)."""

    builtin_roles: set[str]
    privileges: set[str]
    roles: set[str] = field(default_factory=set[str])
    users: set[str] = field(default_factory=set[str])
    tokens: set[str] = field(default_factory=set[str])
    # Security groups created so far: fakepve does not check that a `group` rule names one.
    groups: set[str] = field(default_factory=set[str])


def _b(value: Any) -> int:
    return 1 if value else 0


def _opt(body: dict[str, Any], key: str, value: Any) -> None:
    """The provider's `omitempty`: nil pointers and empty strings are not sent."""
    if value is None or value == "":
        return
    body[key] = _b(value) if isinstance(value, bool) else value


def _num(value: Any) -> int:
    return int(float(value))


# ------------------------------------------------------------------------ access


def role(r: Resource, st: AccessState) -> list[Call]:
    # proxmox/access/roles.go CreateRole: POST /access/roles; roles_types.go RoleCreateRequestBody
    # {roleid, privs (comma)}.
    privs = list(r.inputs.get("privileges") or [])
    unknown = [p for p in privs if p not in st.privileges]
    if unknown:
        raise ReplayRefused(
            f"replay-side: invalid privilege {unknown[0]!r} (PVE::AccessControl::verify_privname)"
        )
    st.roles.add(str(r.inputs["roleId"]))
    return [Call("POST", "/access/roles", {"roleid": r.inputs["roleId"], "privs": ",".join(privs)})]


def user(r: Resource, st: AccessState) -> list[Call]:
    # proxmox/access/users.go CreateUser: POST /access/users; users_types.go UserCreateRequestBody
    # {userid, comment, email, enable (int), expire, firstname, groups (comma), keys, lastname, password}.
    i = r.inputs
    body: dict[str, Any] = {"userid": i["userId"]}
    _opt(body, "comment", i.get("comment"))
    _opt(body, "email", i.get("email"))
    _opt(body, "enable", i.get("enabled", True))
    _opt(body, "firstname", i.get("firstName"))
    _opt(body, "lastname", i.get("lastName"))
    _opt(body, "keys", i.get("keys"))
    _opt(body, "password", i.get("password"))
    if i.get("groups"):
        body["groups"] = ",".join(i["groups"])
    st.users.add(str(i["userId"]))
    return [Call("POST", "/access/users", body)]


def token(r: Resource, st: AccessState) -> list[Call]:
    # proxmox/access/user_token.go CreateToken: POST /access/users/{userid}/token/{tokenid};
    # user_token_types.go UserTokenCreateRequestBody {comment, expire, privsep (int)}.
    i = r.inputs
    uid, name = str(i["userId"]), str(i["tokenName"])
    if uid not in st.users and not uid.startswith("root@"):
        raise ReplayRefused(f"replay-side: no such user ('{uid}')")
    body: dict[str, Any] = {}
    _opt(body, "comment", i.get("comment"))
    _opt(body, "privsep", i.get("privilegesSeparation", True))
    st.tokens.add(f"{uid}!{name}")
    return [Call("POST", f"/access/users/{uid}/token/{name}", body)]


def acl(r: Resource, st: AccessState) -> list[Call]:
    # proxmox/access/acl.go UpdateACL: PUT /access/acl; acl_types.go ACLUpdateRequestBody
    # {path, roles (comma), users|groups|tokens (comma), propagate (int)}.
    i = r.inputs
    rid = str(i["roleId"])
    if rid not in st.roles and rid not in st.builtin_roles:
        raise ReplayRefused(f"replay-side: role '{rid}' does not exist")
    body: dict[str, Any] = {"path": i["path"], "roles": rid}
    if i.get("userId"):
        if i["userId"] not in st.users:
            raise ReplayRefused(f"replay-side: user '{i['userId']}' does not exist")
        body["users"] = i["userId"]
    if i.get("tokenId"):
        if i["tokenId"] not in st.tokens:
            raise ReplayRefused(f"replay-side: token '{i['tokenId']}' does not exist")
        body["tokens"] = i["tokenId"]
    if i.get("groupId"):
        body["groups"] = i["groupId"]
    _opt(body, "propagate", i.get("propagate", True))
    return [Call("PUT", "/access/acl", body)]


# ------------------------------------------------------------------------- pools


def pool(r: Resource, st: AccessState) -> list[Call]:
    # proxmox/pools/pool.go CreatePool: POST pools; pool_types.go PoolCreateRequestBody {poolid, comment}.
    body: dict[str, Any] = {"poolid": r.inputs["poolId"]}
    _opt(body, "comment", r.inputs.get("comment"))
    return [Call("POST", "/pools", body)]


def membership(r: Resource, st: AccessState) -> list[Call]:
    # fwprovider/pools/pool_membership.go Create -> proxmox/pools/pool.go UpdatePool:
    # PUT pools?poolid=<id>; pool_types.go PoolUpdateRequestBody {storage | vms (comma)}.
    i = r.inputs
    body: dict[str, Any] = {}
    if i.get("storageId"):
        body["storage"] = i["storageId"]
    if i.get("vmId") is not None:
        body["vms"] = str(_num(i["vmId"]))
    return [Call("PUT", "/pools", body, {"poolid": str(i["poolId"])})]


# ---------------------------------------------------------------------- firewall


def _fw_base(i: dict[str, Any]) -> str:
    # proxmoxtf/resource/firewall/selector.go: node + vm id -> the VM's firewall, container id ->
    # the container's, neither -> the cluster's.
    if i.get("vmId") is not None:
        return f"/nodes/{i['nodeName']}/qemu/{_num(i['vmId'])}/firewall"
    if i.get("containerId") is not None:
        return f"/nodes/{i['nodeName']}/lxc/{_num(i['containerId'])}/firewall"
    return "/cluster/firewall"


def _rule_body(rule: dict[str, Any], st: AccessState | None = None) -> dict[str, Any]:
    # proxmoxtf/resource/firewall/rules.go mapToRuleCreateRequestBody / mapToBaseRule;
    # proxmox/firewall/rules.go BaseRule {comment, dest, dport, enable (int), icmp-type, iface, log,
    # macro, proto, source, sport} + RuleCreateRequestBody {action, type}. A security group
    # insertion is {type: "group", action: <group>}. `enabled` defaults to true.
    body: dict[str, Any] = {}
    if rule.get("securityGroup"):
        if st is not None and rule["securityGroup"] not in st.groups:
            # PVE::Firewall::verify_rule refuses a group rule naming a group cluster.fw lacks.
            raise ReplayRefused(f"replay-side: no such security group '{rule['securityGroup']}'")
        body.update(type="group", action=rule["securityGroup"])
    else:
        body.update(type=rule.get("type", ""), action=rule.get("action", ""))
    body["enable"] = _b(rule.get("enabled", True))
    for key, wire in (
        ("comment", "comment"),
        ("dest", "dest"),
        ("dport", "dport"),
        ("iface", "iface"),
        ("log", "log"),
        ("macro", "macro"),
        ("proto", "proto"),
        ("source", "source"),
        ("sport", "sport"),
    ):
        _opt(body, wire, rule.get(key))
    return body


def ipset(r: Resource, st: AccessState) -> list[Call]:
    # proxmox/firewall/ipset.go CreateIPSet: POST {base}/ipset {name, comment} (ipset_types.go
    # IPSetCreateRequestBody), then AddCIDRToIPSet: POST {base}/ipset/{name} {cidr, nomatch (int), comment}.
    i = r.inputs
    base = _fw_base(i) + "/ipset"
    body: dict[str, Any] = {"name": i["name"]}
    _opt(body, "comment", i.get("comment"))
    calls = [Call("POST", base, body)]
    for cidr in i.get("cidrs") or []:
        entry: dict[str, Any] = {"cidr": cidr["name"]}
        _opt(entry, "comment", cidr.get("comment"))
        _opt(entry, "nomatch", cidr.get("nomatch"))
        calls.append(Call("POST", f"{base}/{i['name']}", entry))
    return calls


def security_group(r: Resource, st: AccessState) -> list[Call]:
    # proxmox/cluster/firewall/security_groups.go CreateGroup: POST /cluster/firewall/groups
    # {group, comment} (security_groups_types.go GroupCreateRequestBody); its rules through
    # proxmox/firewall/rules.go CreateRule on /cluster/firewall/groups/{group}.
    i = r.inputs
    body: dict[str, Any] = {"group": i["name"]}
    _opt(body, "comment", i.get("comment"))
    st.groups.add(str(i["name"]))
    calls = [Call("POST", "/cluster/firewall/groups", body)]
    calls += [
        Call("POST", f"/cluster/firewall/groups/{i['name']}", _rule_body(x)) for x in i.get("rules") or []
    ]
    return calls


def rules(r: Resource, st: AccessState) -> list[Call]:
    # proxmoxtf/resource/firewall/rules.go RulesCreate -> proxmox/firewall/rules.go CreateRule:
    # POST {base}/rules per rule.
    base = _fw_base(r.inputs) + "/rules"
    return [Call("POST", base, _rule_body(x, st)) for x in r.inputs.get("rules") or []]


def options(r: Resource, st: AccessState) -> list[Call]:
    # proxmoxtf/resource/firewall/options.go: PUT {base}/options with every field (the dv* defaults
    # for those not set); proxmox/firewall/options_types.go OptionsPutRequestBody {dhcp, enable,
    # ipfilter, log_level_in, log_level_out, macfilter, ndp, policy_in, policy_out, radv}.
    i = r.inputs
    body = {
        "dhcp": _b(i.get("dhcp", False)),
        "enable": _b(i.get("enabled", False)),
        "ipfilter": _b(i.get("ipfilter", False)),
        "log_level_in": i.get("logLevelIn", "nolog"),
        "log_level_out": i.get("logLevelOut", "nolog"),
        "macfilter": _b(i.get("macfilter", True)),
        "ndp": _b(i.get("ndp", False)),
        "policy_in": i.get("inputPolicy", "DROP"),
        "policy_out": i.get("outputPolicy", "ACCEPT"),
        "radv": _b(i.get("radv", True)),
    }
    return [Call("PUT", _fw_base(i) + "/options", body)]


def cluster_firewall(r: Resource, st: AccessState) -> list[Call]:
    # proxmoxtf/resource/cluster/firewall/firewall.go setOptions -> proxmox/cluster/firewall/options.go:
    # PUT /cluster/firewall/options; options_types.go OptionsPutRequestBody {ebtables (int), enable (int),
    # log_ratelimit, policy_in, policy_out, policy_forward}; dvPolicy* defaults DROP/ACCEPT/ACCEPT.
    i = r.inputs
    body: dict[str, Any] = {
        "policy_in": i.get("inputPolicy", "DROP"),
        "policy_out": i.get("outputPolicy", "ACCEPT"),
        "policy_forward": i.get("forwardPolicy", "ACCEPT"),
        "ebtables": _b(i.get("ebtables", False)),
        "enable": _b(i.get("enabled", False)),
    }
    rl = i.get("logRatelimit")
    if rl:
        parts = [f"enable={_b(rl.get('enabled', True))}", f"burst={_num(rl.get('burst', 5))}"]
        parts.append(f"rate={rl.get('rate', '1/second')}")
        body["log_ratelimit"] = ",".join(parts)
    return [Call("PUT", "/cluster/firewall/options", body)]


# --------------------------------------------------------------------------- sdn


def subnet(r: Resource, st: AccessState) -> list[Call]:
    # fwprovider/cluster/sdn/subnet/resource.go Create (ID = the CIDR) -> proxmox/cluster/sdn/subnets/
    # subnets.go CreateSubnet: POST /cluster/sdn/vnets/{vnet}/subnets with type=subnet;
    # subnets_types.go Subnet {subnet, vnet, dhcp-dns-server, dhcp-range, dnszoneprefix, gateway,
    # snat (int), type}.
    i = r.inputs
    body: dict[str, Any] = {"subnet": i["cidr"], "vnet": i["vnet"], "type": "subnet"}
    _opt(body, "gateway", i.get("gateway"))
    _opt(body, "snat", i.get("snat"))
    _opt(body, "dnszoneprefix", i.get("dnsZonePrefix"))
    _opt(body, "dhcp-dns-server", i.get("dhcpDnsServer"))
    return [Call("POST", f"/cluster/sdn/vnets/{i['vnet']}/subnets", body)]


def applier(r: Resource, st: AccessState) -> list[Call]:
    # fwprovider/cluster/sdn/applier/resource.go -> proxmox/cluster/sdn/applier/applier.go: PUT /cluster/sdn.
    return [Call("PUT", "/cluster/sdn")]


# ---------------------------------------------------------------------------- vm


def vm(r: Resource, st: AccessState) -> list[Call]:
    """A cloned VM: proxmoxtf/resource/vm/vm.go vmCreateClone.

    Clone: POST /nodes/{node}/qemu/{source}/clone; proxmox/nodes/vms/vms_types.go CloneRequestBody
    {newid, full (int), name, pool, storage, description, target}. Then the config update (vm.go
    after the clone, UpdateRequestBody in vms_types.go: agent, scsihw, cores, sockets, cpu, memory,
    net<n>, ostype, smbios1, startup, tags, onboot, protection, the cloud-init drive, cicustom,
    ipconfig<n>): POST /nodes/{node}/qemu/{vmid}/config. Then the disk resize
    (PUT .../resize {disk, size}) and, if started, POST .../status/start.
    """
    i = r.inputs
    node, vmid = str(i["nodeName"]), _num(i["vmId"])
    clone = i.get("clone")
    if not clone:
        raise ReplayRefused("replay has no mapping for a VM that is not a clone")
    cbody: dict[str, Any] = {"newid": vmid, "full": _b(clone.get("full", True))}
    _opt(cbody, "name", i.get("name"))
    _opt(cbody, "pool", i.get("poolId"))
    _opt(cbody, "storage", clone.get("datastoreId"))
    _opt(cbody, "description", i.get("description"))
    if clone.get("nodeName") and clone["nodeName"] != node:
        cbody["target"] = node
        src_node = clone["nodeName"]
    else:
        src_node = node
    calls = [Call("POST", f"/nodes/{src_node}/qemu/{_num(clone['vmId'])}/clone", cbody)]

    conf: dict[str, Any] = {}
    agent = i.get("agent")
    if agent:
        # proxmox/nodes/vms/custom_agent.go EncodeValues: enabled=,fstrim_cloned_disks=,type=
        conf["agent"] = (
            f"enabled={_b(agent.get('enabled', False))},fstrim_cloned_disks={_b(agent.get('trim', False))}"
            f",type={agent.get('type', 'virtio')}"
        )
    _opt(conf, "scsihw", i.get("scsiHardware"))
    cpu = i.get("cpu") or {}
    if cpu:
        conf["cores"] = _num(cpu.get("cores", 1))
        conf["sockets"] = _num(cpu.get("sockets", 1))
        # proxmox/nodes/vms/custom_cpu_emulation.go: the bare type unless flags/hidden/hv-vendor-id are set
        conf["cpu"] = str(cpu.get("type", "qemu64"))
    mem = i.get("memory") or {}
    if mem.get("dedicated") is not None:
        conf["memory"] = _num(mem["dedicated"])
    for n, dev in enumerate(i.get("networkDevices") or []):
        # proxmox/nodes/vms/custom_network_device.go: model=,bridge=,firewall=,...,tag=
        parts = [f"model={dev.get('model', 'virtio')}", f"bridge={dev['bridge']}"]
        if dev.get("firewall") is not None:
            parts.append(f"firewall={_b(dev['firewall'])}")
        if dev.get("vlanId"):
            parts.append(f"tag={_num(dev['vlanId'])}")
        conf[f"net{n}"] = ",".join(parts)
    os_ = i.get("operatingSystem") or {}
    _opt(conf, "ostype", os_.get("type"))
    smbios = i.get("smbios") or {}
    if smbios.get("uuid"):
        conf["smbios1"] = f"uuid={smbios['uuid']}"
    startup = i.get("startup") or {}
    if startup:
        # proxmox/nodes/vms/custom_startup_order.go: order=,up=,down=
        parts = [f"order={_num(startup['order'])}"] if startup.get("order") is not None else []
        if startup.get("upDelay") is not None:
            parts.append(f"up={_num(startup['upDelay'])}")
        if startup.get("downDelay") is not None:
            parts.append(f"down={_num(startup['downDelay'])}")
        conf["startup"] = ",".join(parts)
    if i.get("tags"):
        conf["tags"] = ";".join(sorted(i["tags"]))  # vm.go: strings.Join(tags, ";")
    conf["onboot"] = _b(i.get("onBoot", True))  # vm.go: StartOnBoot always set on the clone
    if i.get("protection"):
        conf["protection"] = 1  # vm.go: DeletionProtection only when true
    init = i.get("initialization")
    if init:
        iface = init.get("interface", "ide2")
        conf[iface] = f"{init.get('datastoreId', 'local-lvm')}:cloudinit"
        # proxmox/nodes/vms/custom_cloud_init.go EncodeValues: cicustom meta=,...,user= and
        # ipconfig<n> gw=,ip= (in that order).
        files = [f"meta={init['metaDataFileId']}"] if init.get("metaDataFileId") else []
        if init.get("networkDataFileId"):
            files.append(f"network={init['networkDataFileId']}")
        if init.get("userDataFileId"):
            files.append(f"user={init['userDataFileId']}")
        if files:
            conf["cicustom"] = ",".join(files)
        for n, ipc in enumerate(init.get("ipConfigs") or []):
            v4 = ipc.get("ipv4") or {}
            parts = [f"gw={v4['gateway']}"] if v4.get("gateway") else []
            if v4.get("address"):
                parts.append(f"ip={v4['address']}")
            conf[f"ipconfig{n}"] = ",".join(parts)
    calls.append(Call("POST", f"/nodes/{node}/qemu/{vmid}/config", conf))
    for disk in i.get("disks") or []:
        calls.append(
            Call(
                "PUT",
                f"/nodes/{node}/qemu/{vmid}/resize",
                {"disk": disk["interface"], "size": f"{_num(disk['size'])}G"},
            )
        )
    if i.get("started", True):
        calls.append(Call("POST", f"/nodes/{node}/qemu/{vmid}/status/start"))
    return calls


Mapping = Callable[[Resource, AccessState], list[Call]]
MAPPINGS: dict[str, Mapping] = {
    "proxmoxve:index/roleLegacy:RoleLegacy": role,
    "proxmoxve:index/userLegacy:UserLegacy": user,
    "proxmoxve:user/token:Token": token,
    "proxmoxve:index/acl:Acl": acl,
    "proxmoxve:index/poolLegacy:PoolLegacy": pool,
    "proxmoxve:pool/membership:Membership": membership,
    "proxmoxve:firewall/ipsetLegacy:IpsetLegacy": ipset,
    "proxmoxve:cluster/firewall/security/groupLegacy:GroupLegacy": security_group,
    "proxmoxve:firewall/rulesLegacy:RulesLegacy": rules,
    "proxmoxve:firewall/optionsLegacy:OptionsLegacy": options,
    "proxmoxve:cluster/firewallLegacy:FirewallLegacy": cluster_firewall,
    "proxmoxve:sdn/subnet:Subnet": subnet,
    "proxmoxve:sdn/applier:Applier": applier,
    "proxmoxve:index/vmLegacy:VmLegacy": vm,
}


# ------------------------------------------------------------------------ replay


@dataclass
class Outcome:
    replayed: list[str] = field(default_factory=list[str])
    skipped_dynamic: list[str] = field(default_factory=list[str])
    skipped: list[str] = field(default_factory=list[str])
    unmapped: list[str] = field(default_factory=list[str])
    refused: list[str] = field(default_factory=list[str])
    calls: int = 0


def dynamic_module(r: Resource) -> bytes | None:
    raw = base64.b64decode(str(r.inputs.get("__provider", "")))
    return next((m for m in DYNAMIC_MODULES if m in raw), None)


def _urn_name(urn: str) -> str:
    return urn.rsplit("::", 1)[-1]


def dependency_order(resources: Iterable[Resource]) -> list[Resource]:
    """Resources after everything they depend on (depends_on and inputs), else in declaration order."""
    items = list(resources)
    by_name = {r.name: r for r in items}
    position = {r.name: n for n, r in enumerate(items)}
    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for r in items:
        parent = _urn_name(r.parent) if r.parent else ""
        deps = {_urn_name(u) for u in r.dependencies} | ({parent} if parent in by_name else set())
        sorter.add(r.name, *(d for d in deps if d in by_name))
    sorter.prepare()
    out: list[Resource] = []
    while sorter.is_active():
        ready = sorted(sorter.get_ready(), key=position.__getitem__)
        out += [by_name[n] for n in ready]
        sorter.done(*ready)
    return out


def replay(resources: Iterable[Resource], session: httpx.Client, url: str, st: AccessState) -> Outcome:
    out = Outcome()
    for r in dependency_order(resources):
        label = f"{r.type} {r.name}"
        if r.type == DYNAMIC:
            if dynamic_module(r) is None:
                out.unmapped.append(f"{label} (dynamic provider outside {DYNAMIC_MODULES})")
            else:
                out.skipped_dynamic.append(r.name)
            continue
        if r.type in SKIP_TYPES or r.type.startswith(COMPONENT_PREFIX):
            out.skipped.append(label)
            continue
        mapping = MAPPINGS.get(r.type)
        if mapping is None:
            out.unmapped.append(label)
            continue
        try:
            calls = mapping(r, st)
        except ReplayRefused as exc:
            out.refused.append(f"{label}: {exc}")
            continue
        for call in calls:
            out.calls += 1
            resp = session.request(
                call.method, f"{url}/api2/json{call.path}", data=call.body or None, params=call.query or None
            )
            if resp.status_code != 200:
                try:
                    detail: Any = resp.json()
                except ValueError:
                    detail = resp.text
                sent = f"{call.method} {call.path} {call.body}"
                out.refused.append(f"{label}: {sent} -> {resp.status_code} {resp.reason_phrase} {detail}")
        out.replayed.append(label)
    return out
