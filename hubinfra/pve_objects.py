"""Proxmox objects declared through the API with the operator's credential, not through the provider.

Why: pulumi-proxmoxve's bridge computes the id of `sdn.zone.*`, `sdn.Vnet` and `cloned.Vm` (every
resource in `resourceIDOverrides`, provider/resources.go) with `resourceComputeIDOverride`, which
reads `state["id"]` after `resourceFieldIDOverride` renamed that field `resourceId` and asserts it
is an int: the create panics ("interface {} is nil, not int"; muhlba91/pulumi-proxmoxve issue #967
on 8.2.1, PR #1022 on 8.3.0 closed unmerged, and the function unchanged in the repository as of
2026-07-23). No released version is known without it, so these three objects are dynamic resources
here: the zone and the vnets (`SdnObject`) and the experiment's snapshot clone (`SnapshotClone`).
The calls are the ones bpg/terraform-provider-proxmox makes for the same objects
(proxmox/cluster/sdn/{zones,vnets}: POST /cluster/sdn/{zones,vnets}, PUT and DELETE on the id).

Each provider builds its client per call from the resource's inputs (the provider is pickled into the
plan), is idempotent (a create re-run after a crash adopts what the first run made), and never puts
the operator's token into its outputs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import pulumi
from proxmoxer import ProxmoxAPI, ResourceException  # pyright: ignore[reportMissingTypeStubs]
from pulumi import dynamic

from hubcore.proxmox import ProxmoxClient, ProxmoxError, ProxmoxNotFound, VmRef
from hubinfra.clone_init import TASK_TIMEOUT, access_for

# Inputs that say where and as whom, shared by every dynamic resource here.
ACCESS_KEYS = ("endpoint", "insecure", "ca_bundle", "api_token")


class PveObjectError(RuntimeError):
    """A Proxmox object could not be declared; the message says which and why."""


def operator_props(
    *, endpoint: str, insecure: bool, api_token: pulumi.Output[str] | None, ca_bundle: str | None = None
) -> dict[str, Any]:
    """The access inputs of a dynamic resource: the operator's token stays a Pulumi secret."""
    return {
        "endpoint": endpoint,
        "insecure": insecure,
        "ca_bundle": ca_bundle,
        "api_token": pulumi.Output.secret(api_token) if api_token is not None else None,
    }


def api_for(props: Mapping[str, Any]) -> Any:
    """A proxmoxer handle for the calls `hubcore.proxmox` does not offer (SDN, guest firewall)."""
    access = access_for(props)
    return ProxmoxAPI(
        access.url.removeprefix("https://").rstrip("/"),
        user=access.token_user,
        token_name=access.token_name,
        token_value=access.token_secret,
        verify_ssl=access.verify,
        timeout=access.timeout,
        service="PVE",
    )


def _outs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in props.items() if k != "api_token"}


def _fail(what: str, exc: Exception) -> PveObjectError:
    detail = str(getattr(exc, "content", "") or exc).strip().splitlines()
    return PveObjectError(f"{what}: {detail[0] if detail else type(exc).__name__}")


# --------------------------------------------------------------------------------------- SDN


def sdn_params(props: Mapping[str, Any]) -> dict[str, str | int]:
    """The API parameters of a zone or vnet, in PVE's spelling, without the id."""
    params: Mapping[str, Any] = props["params"]
    return {k: v for k, v in params.items() if v is not None}


class SdnObjectProvider(dynamic.ResourceProvider):
    """`kind` is `zones` or `vnets`; `object_id` the zone or vnet id; `params` its API fields."""

    def _collection(self, props: Mapping[str, Any]) -> Any:
        return api_for(props).cluster.sdn(str(props["kind"]))

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        kind, object_id = str(props["kind"]), str(props["object_id"])
        id_key = "zone" if kind == "zones" else "vnet"
        collection = self._collection(props)
        try:
            existing = {str(row.get(id_key)) for row in collection.get()}
            if object_id in existing:
                # A re-run after a crash (or an object left by a destroyed stack): adopt and converge.
                collection(object_id).put(**sdn_params(props))
            else:
                collection.post(**{id_key: object_id, **sdn_params(props)})
        except ResourceException as exc:
            raise _fail(f"SDN {kind[:-1]} {object_id}", exc) from exc
        return dynamic.CreateResult(f"{kind}/{object_id}", outs=_outs(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [k for k in ("kind", "object_id", "endpoint") if olds.get(k) != news.get(k)]
        changed = replaces or [k for k in ("params", "insecure", "ca_bundle") if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(changes=bool(changed), replaces=replaces or None)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        kind, object_id = str(news["kind"]), str(news["object_id"])
        params = sdn_params(news)
        if kind == "zones":
            params.pop("type", None)  # fixed at creation
        dropped = sorted(set(sdn_params(olds)) - set(params) - {"type"})
        if dropped:
            params["delete"] = ",".join(dropped)
        try:
            self._collection(news)(object_id).put(**params)
        except ResourceException as exc:
            raise _fail(f"SDN {kind[:-1]} {object_id}", exc) from exc
        return dynamic.UpdateResult(outs=_outs(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        kind, object_id = str(props["kind"]), str(props["object_id"])
        try:
            self._collection(props)(object_id).delete()
        except ResourceException as exc:
            if getattr(exc, "status_code", None) == 404 or "does not exist" in str(exc):
                return
            raise _fail(f"SDN {kind[:-1]} {object_id}", exc) from exc


class SdnObject(dynamic.Resource):
    """An SDN zone or vnet (pending until an `sdn.Applier` applies it, as with the provider's)."""

    object_id: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        access: Mapping[str, Any],
        kind: str,
        object_id: str,
        params: Mapping[str, pulumi.Input[str | int | None]],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {**access, "kind": kind, "object_id": object_id, "params": dict(params)}
        super().__init__(SdnObjectProvider(), name, props, opts)


# ------------------------------------------------------------------------------ snapshot clone


def net0_on(current: str | None, bridge: str) -> str:
    """`net0` on `bridge` with the firewall flag, keeping the model and the MAC the clone was given."""
    parts = [p for p in (current or "virtio").split(",") if p]
    model = parts[0] if parts and "=" in parts[0] and parts[0].split("=")[0] not in ("bridge",) else "virtio"
    kept = [p for p in parts[1:] if p.split("=")[0] not in ("bridge", "firewall", "tag")]
    return ",".join([model, f"bridge={bridge}", "firewall=1", *kept])


def clear_guest_firewall(api: Any, *, node: str, vmid: int) -> dict[str, int]:
    """Remove the rules, ipsets and aliases a clone inherited with the source's `<vmid>.fw`.

    qemu-server's clone copies the source's firewall file to the new id (src/PVE/API2/Qemu.pm clone_vm
    -> PVE::Firewall::clone_vmfw_conf, pve-firewall src/PVE/Firewall/Helpers.pm). The provider's
    rules resource then refuses to create ("Existing rules detected. Aborting...",
    bpg proxmoxtf/resource/firewall/rules.go RulesCreate), and the inherited `ipfilter-net0` would
    hold the SOURCE's address. The options are left: `OptionsLegacy` sets every one of them.
    Idempotent: a second run finds nothing to remove.
    """
    firewall = api.nodes(node).qemu(vmid).firewall
    removed = {"rules": 0, "ipsets": 0, "aliases": 0}
    rules: list[dict[str, Any]] = firewall.rules.get()
    for rule in sorted(rules, key=lambda r: int(r["pos"]), reverse=True):
        firewall.rules(int(rule["pos"])).delete()
        removed["rules"] += 1
    for ipset in firewall.ipset.get():
        name = str(ipset["name"])
        for entry in firewall.ipset(name).get():
            firewall.ipset(name)(str(entry["cidr"])).delete()
        firewall.ipset(name).delete()
        removed["ipsets"] += 1
    for alias in firewall.aliases.get():
        firewall.aliases(str(alias["name"])).delete()
        removed["aliases"] += 1
    return removed


_CLONE_REPLACE_KEYS = ("endpoint", "node", "vmid", "source_vmid", "snapshot", "datastore", "pool")
_CLONE_UPDATE_KEYS = ("name", "description", "tags", "cores", "memory", "bridge")


def _shape(client: ProxmoxClient, vm: VmRef, props: Mapping[str, Any]) -> None:
    config = client.vm_config(vm)
    client.update_vm_config(
        vm,
        timeout=TASK_TIMEOUT,
        name=str(props["name"]),
        description=str(props["description"]),
        tags=";".join(props["tags"]),
        cores=int(props["cores"]),
        memory=int(props["memory"]),
        net0=net0_on(config.get("net0"), str(props["bridge"])),
    )


class SnapshotCloneProvider(dynamic.ResourceProvider):
    """A full clone of `source_vmid` at `snapshot`, created stopped, on its own vnet, with the
    source's firewall leftovers removed. Cloud-init, identity, protection and start are
    `CloneCloudInit`'s (hubinfra.clone_init)."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        client = ProxmoxClient.from_access(access_for(props))
        node, vmid = str(props["node"]), int(props["vmid"])
        vm = VmRef(vmid=vmid, node=node)
        try:
            existing = {r.vmid: r for r in client.cluster_vms()}
            if vmid in existing:
                # Ours only if it carries the name we give it: a re-run after a crash adopts it.
                if existing[vmid].name != props["name"]:
                    raise PveObjectError(
                        f"VM {vmid} already exists as {existing[vmid].name!r}; refusing to adopt it as "
                        f"{props['name']!r}: pick another vmId or remove that VM"
                    )
            else:
                client.clone(
                    VmRef(vmid=int(props["source_vmid"]), node=node),
                    newid=vmid,
                    name=str(props["name"]),
                    pool=str(props["pool"]),
                    snapname=str(props["snapshot"]),
                    full=True,
                    storage=str(props["datastore"]),
                    description=str(props["description"]),
                    timeout=TASK_TIMEOUT,
                )
            _shape(client, vm, props)
            clear_guest_firewall(api_for(props), node=node, vmid=vmid)
        except (ProxmoxError, ResourceException) as exc:
            raise _fail(f"cloning VM {props['source_vmid']}@{props['snapshot']} to {vmid}", exc) from exc
        return dynamic.CreateResult(f"{node}/{vmid}", outs=_outs(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        replaces = [k for k in _CLONE_REPLACE_KEYS if olds.get(k) != news.get(k)]
        changed = replaces + [k for k in _CLONE_UPDATE_KEYS if olds.get(k) != news.get(k)]
        return dynamic.DiffResult(
            changes=bool(changed), replaces=replaces or None, delete_before_replace=True
        )

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        client = ProxmoxClient.from_access(access_for(news))
        try:
            _shape(client, VmRef(vmid=int(news["vmid"]), node=str(news["node"])), news)
        except ProxmoxError as exc:
            raise _fail(f"updating clone {news['vmid']}", exc) from exc
        return dynamic.UpdateResult(outs=_outs(news))

    def delete(self, _id: str, props: dict[str, Any]) -> None:
        client = ProxmoxClient.from_access(access_for(props))
        vm = VmRef(vmid=int(props["vmid"]), node=str(props["node"]))
        try:
            client.stop(vm, timeout=TASK_TIMEOUT)
            # protection was reset by CloneCloudInit; reset again in case it never ran.
            client.update_vm_config(vm, timeout=TASK_TIMEOUT, protection=0)
            client.destroy(vm, purge=True, timeout=TASK_TIMEOUT)
        except ProxmoxNotFound:
            return
        except ProxmoxError as exc:
            raise _fail(f"destroying clone {vm.vmid}", exc) from exc


class SnapshotClone(dynamic.Resource):
    vmid: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        *,
        access: Mapping[str, Any],
        node: str,
        vmid: int,
        source_vmid: int,
        snapshot: str,
        datastore: str,
        pool: pulumi.Input[str],
        vm_name: str,
        description: str,
        tags: list[str],
        cores: int,
        memory: int,
        bridge: str,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            **access,
            "node": node,
            "vmid": vmid,
            "source_vmid": source_vmid,
            "snapshot": snapshot,
            "datastore": datastore,
            "pool": pool,
            "name": vm_name,
            "description": description,
            "tags": tags,
            "cores": cores,
            "memory": memory,
            "bridge": bridge,
        }
        super().__init__(SnapshotCloneProvider(), name, props, opts)


# ---------------------------------------------------------------------------- cluster firewall


def local_address_towards(endpoint: str) -> str | None:
    """The address this machine uses to reach `endpoint` (a UDP 'connect' sends no packet)."""
    host = urlsplit(endpoint).hostname or ""
    port = urlsplit(endpoint).port or 8006
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((host, port))
            return str(probe.getsockname()[0])
    except OSError:
        return None


def cut_off_problem(address: str | None, *, allowed: list[str]) -> str | None:
    """Why input DROP on the hosts would cut `address` off the API, or None when it keeps access."""
    if address is None:
        return None
    ip = ipaddress.ip_address(address)
    if ip.is_loopback or any(ip in ipaddress.ip_network(cidr) for cidr in allowed):
        return None
    return (
        f"this machine reaches the Proxmox API from {address}, which is not in the `management` ipset "
        f"({', '.join(allowed)}): input policy DROP on the hosts would cut it off tcp/8006 and 22. "
        f"Add it to hub:network.operatorAccess, or run `pulumi up` from the management network"
    )


def existing_rules_problem(rules: list[dict[str, Any]]) -> str | None:
    if not rules:
        return None
    sample = "; ".join(
        f"{r.get('pos')}: {r.get('type', '')} {r.get('action', '')} {r.get('comment', '')}".strip()
        for r in rules[:3]
    )
    return (
        f"the datacenter firewall already has {len(rules)} rule(s) ({sample}); the provider refuses to "
        "create the cluster rule list over them ('Existing rules detected'). Either import them "
        "(`pulumi import proxmoxve:firewall/rulesLegacy:RulesLegacy hub-network-cluster-rules cluster`, then "
        "copy them into the program) or remove them (Datacenter -> Firewall), then run `pulumi up` again"
    )


class ClusterFirewallGuardProvider(dynamic.ResourceProvider):
    """Runs before the cluster firewall is declared, at `pulumi up` (never at preview): refuses,
    with one clear message, to enable input DROP over rules it does not own or over the operator's
    own connection."""

    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        problem = cut_off_problem(
            local_address_towards(str(props["endpoint"])), allowed=list(props["allowed"])
        )
        if problem is None:
            try:
                rules: list[dict[str, Any]] = api_for(props).cluster.firewall.rules.get()
            except ResourceException as exc:
                raise _fail("reading the datacenter firewall rules", exc) from exc
            problem = existing_rules_problem(rules)
        if problem is not None:
            raise PveObjectError(problem)
        return dynamic.CreateResult("cluster-firewall-guard", outs=_outs(props))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.DiffResult:
        # Checked once, before the rules exist: afterwards they are the stack's own.
        return dynamic.DiffResult(changes=olds.get("allowed") != news.get("allowed"))

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> dynamic.UpdateResult:
        problem = cut_off_problem(local_address_towards(str(news["endpoint"])), allowed=list(news["allowed"]))
        if problem is not None:
            raise PveObjectError(problem)
        return dynamic.UpdateResult(outs=_outs(news))


class ClusterFirewallGuard(dynamic.Resource):
    def __init__(
        self,
        name: str,
        *,
        access: Mapping[str, Any],
        allowed: list[str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(ClusterFirewallGuardProvider(), name, {**access, "allowed": allowed}, opts)
