"""CloneCloudInit: give a snapshot clone its own cloud-init, which `cloned.Vm` cannot do.

Why this exists: pulumi-proxmoxve 8.6's `cloned.Vm` (the only resource that clones from a snapshot)
does not manage cloud-init. A clone of the Hub inherits the source's cloud-init drive AND its
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

and only then starts the VM when asked. On update (settings or params changed) a running clone is
rebooted so cloud-init applies the new user data. A clone found running at create time (started by
hand before its settings existed) is stopped first: it runs under the source's identity.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import pulumi
from pulumi import dynamic

# The slot HubVm puts its cloud-init drive on, so a clone of a Hub has it there too.
CLOUDINIT_INTERFACE = "ide2"
_DRIVE_KEY = re.compile(r"^(ide|sata|scsi|virtio)\d+$")
# Inputs whose change means "a different VM": the resource is replaced, i.e. configured afresh.
_REPLACE_KEYS = ("endpoint", "node", "vmid", "clone_of")
_COMPARED_KEYS = (*_REPLACE_KEYS, "insecure", "datastore", "cicustom", "ipconfig0", "vm_uuid", "start")
TOKEN_ENV = "PROXMOX_VE_API_TOKEN"


class CloneInitError(RuntimeError):
    """The clone could not be given its own cloud-init; the message says why."""


class PveApi(Protocol):
    def get(self, path: str) -> Any: ...

    def post(self, path: str, data: Mapping[str, str]) -> Any: ...


class HttpPveApi:
    """Just enough of the Proxmox VE API: JSON GET/POST with an API token, task polling."""

    def __init__(self, endpoint: str, token: str, *, insecure: bool, timeout: float = 30.0) -> None:
        self._base = endpoint.rstrip("/") + "/api2/json"
        self._headers = {"Authorization": f"PVEAPIToken={token}", "Accept": "application/json"}
        self._timeout = timeout
        self._context = ssl.create_default_context()
        if insecure:
            self._context.check_hostname = False
            self._context.verify_mode = ssl.CERT_NONE

    def _request(self, method: str, path: str, data: Mapping[str, str] | None = None) -> Any:
        body = urllib.parse.urlencode(dict(data)).encode() if data is not None else None
        request = urllib.request.Request(self._base + path, data=body, method=method, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout, context=self._context) as response:
                document: dict[str, Any] = json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            detail = error.read().decode(errors="replace").strip()
            raise CloneInitError(f"{method} {path}: HTTP {error.code} {error.reason} {detail}") from None
        except urllib.error.URLError as error:
            raise CloneInitError(f"{method} {path}: {error.reason}") from None
        return document.get("data")

    def get(self, path: str) -> Any:
        return self._request("GET", path)

    def post(self, path: str, data: Mapping[str, str]) -> Any:
        return self._request("POST", path, data)


def wait_for_task(
    api: PveApi,
    node: str,
    upid: Any,
    *,
    timeout: float = 600.0,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Poll a UPID until it stops; OK and `WARNINGS: ...` succeed, anything else is the error."""
    if not isinstance(upid, str) or not upid.startswith("UPID:"):
        return  # a synchronous answer: nothing to wait for
    path = f"/nodes/{node}/tasks/{urllib.parse.quote(upid, safe='')}/status"
    waited = 0.0
    delay = 0.5
    while True:
        status: dict[str, Any] = api.get(path) or {}
        if status.get("status") == "stopped":
            exit_status = str(status.get("exitstatus", ""))
            if exit_status == "OK" or exit_status.startswith("WARNINGS:"):
                return
            raise CloneInitError(f"task {upid} failed: {exit_status}")
        if waited >= timeout:
            raise CloneInitError(f"task {upid} still running after {timeout:.0f}s")
        sleep(delay)
        waited += delay
        delay = min(delay * 2, 5.0)


def smbios_with_uuid(current: str | None, vm_uuid: str) -> str:
    """The clone's `smbios1` with its uuid replaced and every other field kept."""
    kept = [part for part in (current or "").split(",") if part and not part.startswith("uuid=")]
    return ",".join([f"uuid={vm_uuid}", *kept])


def configure_clone(
    api: PveApi,
    *,
    node: str,
    vmid: int,
    datastore: str,
    cicustom: str,
    ipconfig0: str,
    vm_uuid: str,
    start: bool,
    restart: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Point the clone at its own cloud-init and identity, then start (or reboot) it as asked.

    Returns the config keys that were set. `restart` is for updates: a running clone is rebooted so
    that cloud-init picks up its new user data; at create time a running clone is stopped first.
    """
    base = f"/nodes/{node}/qemu/{vmid}"
    status: dict[str, Any] = api.get(f"{base}/status/current") or {}
    running = status.get("status") == "running"
    if running and not restart:
        # Started before it had its own settings: it is running under the source's identity.
        wait_for_task(api, node, api.post(f"{base}/status/stop", {}), sleep=sleep)
        running = False
    config: dict[str, Any] = api.get(f"{base}/config") or {}
    changes: dict[str, str] = {
        "cicustom": cicustom,
        "ipconfig0": ipconfig0,
        "smbios1": smbios_with_uuid(config.get("smbios1"), vm_uuid),
    }
    drives = [k for k, v in config.items() if _DRIVE_KEY.match(k) and "cloudinit" in str(v)]
    if not drives:
        occupant = config.get(CLOUDINIT_INTERFACE)
        if occupant is not None:
            raise CloneInitError(
                f"VM {vmid} has no cloud-init drive and {CLOUDINIT_INTERFACE} is taken ({occupant}); "
                "free it so the clone can get its own cloud-init"
            )
        changes[CLOUDINIT_INTERFACE] = f"{datastore}:cloudinit,media=cdrom"
    wait_for_task(api, node, api.post(f"{base}/config", changes), sleep=sleep)
    if running:
        wait_for_task(api, node, api.post(f"{base}/status/reboot", {}), sleep=sleep)
    elif start:
        wait_for_task(api, node, api.post(f"{base}/status/start", {}), sleep=sleep)
    return changes


def _api_for(props: Mapping[str, Any]) -> HttpPveApi:
    token = props.get("api_token") or os.environ.get(TOKEN_ENV)
    if not token:
        raise CloneInitError(
            f"no Proxmox API token: set hub:proxmoxApiToken (pulumi config set --secret) or {TOKEN_ENV}"
        )
    return HttpPveApi(str(props["endpoint"]), str(token), insecure=bool(props.get("insecure")))


def _configure(props: Mapping[str, Any], *, restart: bool) -> None:
    configure_clone(
        _api_for(props),
        node=str(props["node"]),
        vmid=int(props["vmid"]),
        datastore=str(props["datastore"]),
        cicustom=str(props["cicustom"]),
        ipconfig0=str(props["ipconfig0"]),
        vm_uuid=str(props["vm_uuid"]),
        start=bool(props["start"]),
        restart=restart,
    )


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
        # Nothing to undo: the clone itself is destroyed by its cloned.Vm resource.
        return None


class CloneCloudInit(dynamic.Resource):
    """The clone's own cloud-init, identity and start, applied through the Proxmox API."""

    def __init__(
        self,
        name: str,
        *,
        endpoint: str,
        insecure: bool,
        api_token: pulumi.Output[str] | None,
        node: str,
        vmid: pulumi.Input[int],
        clone_of: str,
        datastore: str,
        cicustom: pulumi.Input[str],
        ipconfig0: str,
        vm_uuid: str,
        start: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        props: dict[str, Any] = {
            "endpoint": endpoint,
            "insecure": insecure,
            "api_token": pulumi.Output.secret(api_token) if api_token is not None else None,
            "node": node,
            "vmid": vmid,
            "clone_of": clone_of,
            "datastore": datastore,
            "cicustom": cicustom,
            "ipconfig0": ipconfig0,
            "vm_uuid": vm_uuid,
            "start": start,
        }
        super().__init__(CloneCloudInitProvider(), name, props, opts)
