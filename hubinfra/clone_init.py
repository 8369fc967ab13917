"""CloneCloudInit: give a snapshot clone its own cloud-init, identity and safety flags.

Why this exists: the clone (`hubinfra.pve_objects.SnapshotClone`; pulumi-proxmoxve's `cloned.Vm`
panics on create and never managed cloud-init) is a copy of the source's config. A clone of the Hub
inherits the source's cloud-init drive AND its
`cicustom` (the source's user-data snippet, which carries the source's settings and token). Proxmox
regenerates the cloud-init image at every start, and the clone's new MAC address changes the
instance-id, so on first boot cloud-init would re-run the *source's* user data and write the source's
`/etc/hub/hub.yaml` (production token, production vmid) into the clone.

This dynamic resource closes that: after the clone exists (created stopped) and before it is first
started, it sets, through the Proxmox API with the operator's credentials (the same ones the provider
uses), on the clone's config:

- `cicustom` -> the experiment's own user-data and meta-data snippets (its own settings, token,
  vmid, experiment and params; an instance-id derived from that user data, so any change re-runs
  cloud-init);
- a cloud-init drive, if the source had none (on `ide2`, the slot `HubVm` uses);
- `ipconfig0` -> an address on the clone's isolated network (not the source's management address);
- `smbios1` uuid -> the uuid its settings name (`vm_uuid`), checked by `hub-identity-check` before
  the runtime starts;
- `protection=0`, `onboot=0` and no `startup`: a clone copies these from the source (qemu-server
  src/PVE/API2/Qemu.pm clone_vm copies every option it does not list as a drive or net: "copy
  everything else"), so a clone of the protected production Hub could not be destroyed
  (`check_protection`: "can't remove VM") and would start with the node, before its owner decided;

and only then starts the VM when asked. On update (settings or params changed) a running clone is
rebooted so cloud-init applies the new user data. A clone found running at create time (started by
hand before its settings existed) is stopped first: it runs under the source's identity.

It talks to Proxmox through `hubcore.proxmox.ProxmoxClient`, the one client both halves use (retries,
lock budget, PVE's task-success rule), built per call from the resource's inputs: the provider is
pickled (dill) into the plan, and a client object must not be.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

import pulumi
from pulumi import dynamic

from hubcore.proxmox import ProxmoxAccess, ProxmoxClient, ProxmoxError, VmRef

# The slot HubVm puts its cloud-init drive on, so a clone of a Hub has it there too.
CLOUDINIT_INTERFACE = "ide2"
_DRIVE_KEY = re.compile(r"^(ide|sata|scsi|virtio)\d+$")
# Inputs whose change means "a different VM": the resource is replaced, i.e. configured afresh.
_REPLACE_KEYS = ("endpoint", "node", "vmid", "clone_of")
_COMPARED_KEYS = (
    *_REPLACE_KEYS,
    "insecure",
    "ca_bundle",
    "datastore",
    "cicustom",
    "ipconfig0",
    "vm_uuid",
    "user_data_sha256",
    "start",
)
# What a snapshot clone copies from the source and an experiment must not keep (see the docstring).
RESET_FLAGS: dict[str, str | int] = {"protection": 0, "onboot": 0}
RESET_DELETED = ("startup",)
TOKEN_ENV = "PROXMOX_VE_API_TOKEN"
# Bound on each Proxmox task (config, stop, start, reboot) the set-up waits for.
TASK_TIMEOUT = 600.0


class CloneInitError(RuntimeError):
    """The clone could not be given its own cloud-init; the message says why."""


def smbios_with_uuid(current: str | None, vm_uuid: str) -> str:
    """The clone's `smbios1` with its uuid replaced and every other field kept."""
    kept = [part for part in (current or "").split(",") if part and not part.startswith("uuid=")]
    return ",".join([f"uuid={vm_uuid}", *kept])


def configure_clone(
    client: ProxmoxClient,
    vm: VmRef,
    *,
    datastore: str,
    cicustom: str,
    ipconfig0: str,
    vm_uuid: str,
    start: bool,
    restart: bool,
    timeout: float = TASK_TIMEOUT,
) -> dict[str, str | int]:
    """Point the clone at its own cloud-init and identity, then start (or reboot) it as asked.

    Returns the config keys that were set. `restart` is for updates: a running clone is rebooted so
    that cloud-init picks up its new user data (PVE keeps these keys pending on a running VM until it
    restarts); at create time a running clone is stopped first. Safe to re-run: the same values are
    set again, and a create re-run after a crash finds the clone running and stops it before setting
    them, as it would any clone started before its settings existed. Proxmox failures propagate as
    the client's typed errors (ProxmoxError); a config that cannot be fixed here is a CloneInitError.
    """
    running = client.vm_status(vm).status == "running"
    if running and not restart:
        # Started before it had its own settings: it is running under the source's identity.
        client.stop(vm, timeout=timeout)
        running = False
    config = client.vm_config(vm)
    changes: dict[str, str | int] = {
        **RESET_FLAGS,
        "cicustom": cicustom,
        "ipconfig0": ipconfig0,
        "smbios1": smbios_with_uuid(config.get("smbios1"), vm_uuid),
    }
    inherited = [key for key in RESET_DELETED if key in config]
    if inherited:
        changes["delete"] = ",".join(inherited)
    drives = [k for k, v in config.items() if _DRIVE_KEY.match(k) and "cloudinit" in str(v)]
    if not drives:
        occupant = config.get(CLOUDINIT_INTERFACE)
        if occupant is not None:
            raise CloneInitError(
                f"VM {vm.vmid} has no cloud-init drive and {CLOUDINIT_INTERFACE} is taken ({occupant}); "
                "free it so the clone can get its own cloud-init"
            )
        changes[CLOUDINIT_INTERFACE] = f"{datastore}:cloudinit,media=cdrom"
    client.update_vm_config(vm, timeout=timeout, **changes)
    if running:
        client.reboot(vm, timeout=timeout)
    elif start:
        client.start(vm, timeout=timeout)
    return changes


def access_for(props: Mapping[str, Any]) -> ProxmoxAccess:
    """The operator's Proxmox access from the resource's inputs: `endpoint`, the API token
    (`user@realm!tokenid=secret`, from `api_token` or $PROXMOX_VE_API_TOKEN), and TLS verification
    (`insecure`, or `ca_bundle`, else the system trust store)."""
    token = props.get("api_token") or os.environ.get(TOKEN_ENV)
    if not token:
        raise CloneInitError(
            f"no Proxmox API token: set hub:proxmoxApiToken (pulumi config set --secret) or {TOKEN_ENV}"
        )
    identity, _, secret = str(token).partition("=")
    user, _, name = identity.partition("!")
    if not (secret and name and "@" in user):
        # Never echo the token: it may be the secret itself, pasted into the wrong field.
        raise CloneInitError("the Proxmox API token must look like user@realm!tokenid=secret")
    ca_bundle = props.get("ca_bundle")
    verify: bool | str = False if props.get("insecure") else (str(ca_bundle) if ca_bundle else True)
    return ProxmoxAccess(
        url=str(props["endpoint"]),
        token_user=user,
        token_name=name,
        token_secret=secret,
        verify=verify,
    )


def _configure(props: Mapping[str, Any], *, restart: bool) -> None:
    # A client per call, never kept on the provider: the provider is pickled (dill) into the plan.
    client = ProxmoxClient.from_access(access_for(props))
    vm = VmRef(vmid=int(props["vmid"]), node=str(props["node"]))
    try:
        configure_clone(
            client,
            vm,
            datastore=str(props["datastore"]),
            cicustom=str(props["cicustom"]),
            ipconfig0=str(props["ipconfig0"]),
            vm_uuid=str(props["vm_uuid"]),
            start=bool(props["start"]),
            restart=restart,
        )
    except ProxmoxError as exc:
        raise CloneInitError(f"configuring clone {vm.vmid} on {vm.node} failed: {exc}") from exc


def _outs(props: Mapping[str, Any]) -> dict[str, Any]:
    # Never echo the operator's token into state as a plain output.
    return {k: v for k, v in props.items() if k != "api_token"}


class CloneCloudInitProvider(dynamic.ResourceProvider):
    def create(self, props: dict[str, Any]) -> dynamic.CreateResult:
        _configure(props, restart=False)
        return dynamic.CreateResult(f"{props['node']}/{props['vmid']}", outs=_outs(props))

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.DiffResult:
        changed = [k for k in _COMPARED_KEYS if _olds.get(k) != _news.get(k)]
        return dynamic.DiffResult(
            changes=bool(changed), replaces=[k for k in changed if k in _REPLACE_KEYS] or None
        )

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> dynamic.UpdateResult:
        _configure(_news, restart=True)
        return dynamic.UpdateResult(outs=_outs(_news))

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        # Nothing to undo: the clone itself is destroyed by its SnapshotClone resource.
        return None


class CloneCloudInit(dynamic.Resource):
    """The clone's own cloud-init, identity and start, applied through the Proxmox API."""

    def __init__(
        self,
        name: str,
        *,
        endpoint: str,
        insecure: bool,
        ca_bundle: str | None = None,
        api_token: pulumi.Output[str] | None,
        node: str,
        vmid: pulumi.Input[int],
        clone_of: str,
        datastore: str,
        cicustom: pulumi.Input[str],
        ipconfig0: str,
        vm_uuid: str,
        start: bool,
        user_data_sha256: pulumi.Input[str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "endpoint": endpoint,
            "insecure": insecure,
            "ca_bundle": ca_bundle,
            "api_token": pulumi.Output.secret(api_token) if api_token is not None else None,
            "node": node,
            "vmid": vmid,
            "clone_of": clone_of,
            "datastore": datastore,
            "cicustom": cicustom,
            "ipconfig0": ipconfig0,
            "vm_uuid": vm_uuid,
            "user_data_sha256": user_data_sha256,
            "start": start,
        }
        super().__init__(CloneCloudInitProvider(), name, props, opts)
