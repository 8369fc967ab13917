"""CloneCloudInit's provider logic against fakepve (a schema-validating PVE API over verified TLS),
through hubcore's ProxmoxClient: assertions are on the VM's resulting config and power state and on
fakepve's request log."""

from __future__ import annotations

from typing import Any

import pytest

from hubcore.proxmox import ProxmoxClient, ProxmoxTaskFailed, VmRef
from hubinfra.clone_init import (
    CloneCloudInitProvider,
    CloneInitError,
    access_for,
    configure_clone,
    smbios_with_uuid,
)
from tests.support.hubenv import TOKEN_ID, TOKEN_SECRET, fake_pve_client

UUID = "2babd623-f266-5d58-b4b3-b8018972154c"
NODE = "pve1"
VMID = 1150
CLONE = VmRef(vmid=VMID, node=NODE)
BASE = f"/api2/json/nodes/{NODE}/qemu/{VMID}"
CICUSTOM = "user=local:snippets/exp-user-data.yaml,meta=local:snippets/exp-meta-data.yaml"
IPCONFIG0 = "ip=10.210.50.10/24,gw=10.210.50.1"
# What a full clone of the production Hub inherits: its cloud-init drive, snippet, address and uuid.
INHERITED = {
    "ide2": "local-lvm:vm-1150-cloudinit,media=cdrom",
    "cicustom": "user=local:snippets/hub-prod-user-data.yaml",
    "ipconfig0": "ip=10.20.0.10/24,gw=10.20.0.1",
    "smbios1": "uuid=0b0b0b0b-0000-0000-0000-000000000000,serial=aHVi,base64=1",
    "scsi0": "local-lvm:vm-1150-disk-0,size=200G",
    "memory": 4096,
}


def _clone(pve: Any, *, status: str = "stopped", config: dict[str, Any] | None = None) -> Any:
    return pve.add_vm(
        VMID, "exp-alpha", node=NODE, status=status, config=dict(INHERITED if config is None else config)
    )


@pytest.fixture
def client(pve: Any, fakepve_cafile: str) -> ProxmoxClient:
    return fake_pve_client(pve, fakepve_cafile, transient_retry_seconds=1.0, locked_retry_seconds=1.0)


def _configure(client: ProxmoxClient, *, start: bool = True, restart: bool = False) -> dict[str, str]:
    return configure_clone(
        client,
        CLONE,
        datastore="local-lvm",
        cicustom=CICUSTOM,
        ipconfig0=IPCONFIG0,
        vm_uuid=UUID,
        start=start,
        restart=restart,
        timeout=30,
    )


def _posts(pve: Any) -> list[str]:
    return [path.removeprefix(BASE) for method, path, _ in pve.requests if method == "POST"]


def _props(pve: Any, cafile: str, **extra: Any) -> dict[str, Any]:
    return {
        "endpoint": pve.url,
        "insecure": False,
        "ca_bundle": cafile,
        "api_token": f"{TOKEN_ID}={TOKEN_SECRET}",
        "node": NODE,
        "vmid": VMID,
        "clone_of": "100@hub-" + "a" * 32,
        "datastore": "local-lvm",
        "cicustom": CICUSTOM,
        "ipconfig0": IPCONFIG0,
        "vm_uuid": UUID,
        "start": True,
        **extra,
    }


def test_stopped_clone_gets_its_own_cicustom_identity_and_address_before_it_starts(
    pve: Any, client: ProxmoxClient
) -> None:
    vm = _clone(pve)
    _configure(client)
    assert _posts(pve) == ["/config", "/status/start"]
    assert vm.status == "running"
    assert vm.config["cicustom"] == CICUSTOM
    assert vm.config["ipconfig0"] == IPCONFIG0
    # The source's uuid is replaced; the other SMBIOS fields survive.
    assert vm.config["smbios1"] == f"uuid={UUID},serial=aHVi,base64=1"
    # The inherited cloud-init drive is reused (Proxmox regenerates it at start), not duplicated.
    assert vm.config["ide2"] == INHERITED["ide2"]
    config_body = next(body for m, p, body in pve.requests if m == "POST" and p.endswith("/config"))
    assert b"ide2" not in config_body
    # Every task was waited for, and succeeded.
    assert [(t["type"], t["exitstatus"]) for t in pve.tasklog] == [("qmconfig", "OK"), ("qmstart", "OK")]


def test_no_start_when_not_asked(pve: Any, client: ProxmoxClient) -> None:
    vm = _clone(pve)
    _configure(client, start=False)
    assert _posts(pve) == ["/config"]
    assert vm.status == "stopped" and vm.config["cicustom"] == CICUSTOM


def test_a_clone_without_cloud_init_drive_gets_one_on_ide2(pve: Any, client: ProxmoxClient) -> None:
    vm = _clone(pve, config={k: v for k, v in INHERITED.items() if k != "ide2"})
    changes = _configure(client)
    assert changes["ide2"] == "local-lvm:cloudinit,media=cdrom"
    assert vm.config["ide2"] == "local-lvm:cloudinit,media=cdrom"


def test_ide2_taken_by_something_else_is_refused(pve: Any, client: ProxmoxClient) -> None:
    vm = _clone(pve, config={"ide2": "local:iso/debian.iso,media=cdrom", "scsi0": INHERITED["scsi0"]})
    with pytest.raises(CloneInitError, match="ide2 is taken"):
        _configure(client)
    assert _posts(pve) == []
    assert "cicustom" not in vm.config


def test_clone_running_at_create_is_stopped_before_anything_else(pve: Any, client: ProxmoxClient) -> None:
    vm = _clone(pve, status="running")
    _configure(client)
    assert _posts(pve) == ["/status/stop", "/config", "/status/start"]
    # Stopped first, so the new values are the config (not pending) when it starts again.
    assert vm.status == "running" and vm.pending == {} and vm.config["cicustom"] == CICUSTOM


def test_update_of_a_running_clone_reboots_it_so_cloud_init_applies(pve: Any, client: ProxmoxClient) -> None:
    vm = _clone(pve, status="running")
    _configure(client, restart=True)
    assert _posts(pve) == ["/config", "/status/reboot"]
    # PVE kept the new keys pending on the running VM; the reboot applied them.
    assert vm.status == "running" and vm.pending == {}
    assert vm.config["cicustom"] == CICUSTOM and vm.config["ipconfig0"] == IPCONFIG0


def test_rerun_is_idempotent(pve: Any, client: ProxmoxClient) -> None:
    vm = _clone(pve)
    _configure(client, start=False)
    digest = vm.digest()
    _configure(client, start=False)
    assert vm.digest() == digest and vm.status == "stopped"
    assert _posts(pve) == ["/config", "/config"]


def test_failed_task_surfaces_with_its_exit_status(pve: Any, client: ProxmoxClient) -> None:
    _clone(pve)
    pve.fail("POST", f"{BASE}/status/start", error="qemu_exited_code")
    with pytest.raises(ProxmoxTaskFailed) as failed:
        _configure(client)
    assert failed.value.exitstatus == "QEMU exited with code 1"


def test_provider_create_configures_through_the_api_and_never_outputs_the_token(
    pve: Any, fakepve_cafile: str
) -> None:
    vm = _clone(pve)
    result = CloneCloudInitProvider().create(_props(pve, fakepve_cafile))
    assert result.id == f"{NODE}/{VMID}"
    assert result.outs is not None
    assert "api_token" not in result.outs and TOKEN_SECRET not in repr(result.outs)
    assert vm.status == "running" and vm.config["smbios1"].startswith(f"uuid={UUID}")
    assert all(TOKEN_SECRET.encode() not in body for _, _, body in pve.requests)


def test_provider_wraps_proxmox_errors_with_their_cause(pve: Any, fakepve_cafile: str) -> None:
    _clone(pve)
    pve.fail("POST", f"{BASE}/status/start", error="qemu_exited_code")
    with pytest.raises(CloneInitError, match=f"clone {VMID} on {NODE}.*QEMU exited") as failed:
        CloneCloudInitProvider().create(_props(pve, fakepve_cafile))
    assert isinstance(failed.value.__cause__, ProxmoxTaskFailed)


def test_provider_takes_the_token_from_the_environment(
    pve: Any, fakepve_cafile: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    vm = _clone(pve)
    monkeypatch.setenv("PROXMOX_VE_API_TOKEN", f"{TOKEN_ID}={TOKEN_SECRET}")
    CloneCloudInitProvider().update("x", {}, _props(pve, fakepve_cafile, api_token=None, start=False))
    assert vm.config["cicustom"] == CICUSTOM


def test_access_from_props() -> None:
    access = access_for(
        {"endpoint": "https://pve:8006", "api_token": "root@pam!pulumi=s3cret", "insecure": True}
    )
    assert (access.url, access.token_user, access.token_name, access.token_secret) == (
        "https://pve:8006",
        "root@pam",
        "pulumi",
        "s3cret",
    )
    assert access.verify is False and "s3cret" not in repr(access)
    verified = access_for({"endpoint": "https://pve:8006", "api_token": "a@pve!t=x", "ca_bundle": "/ca.pem"})
    assert verified.verify == "/ca.pem"
    assert access_for({"endpoint": "https://pve:8006", "api_token": "a@pve!t=x"}).verify is True


def test_malformed_token_is_refused_without_echoing_it() -> None:
    with pytest.raises(CloneInitError, match="user@realm!tokenid=secret") as failed:
        access_for({"endpoint": "https://pve:8006", "api_token": "just-the-s3cret"})
    assert "s3cret" not in str(failed.value)


def test_smbios_with_uuid_on_empty_config() -> None:
    assert smbios_with_uuid(None, UUID) == f"uuid={UUID}"


def test_diff_replaces_for_another_vm_and_updates_for_new_settings() -> None:
    provider = CloneCloudInitProvider()
    old = {"node": "pve", "vmid": 1150, "clone_of": "100@hub-a", "cicustom": "user=a", "start": True}
    assert provider.diff("pve/1150", old, dict(old)).changes is False
    new_settings = provider.diff("pve/1150", old, {**old, "cicustom": "user=b"})
    assert new_settings.changes is True and not new_settings.replaces
    other_clone = provider.diff("pve/1150", old, {**old, "clone_of": "100@hub-b"})
    assert other_clone.replaces == ["clone_of"]


def test_provider_without_any_token_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROXMOX_VE_API_TOKEN", raising=False)
    with pytest.raises(CloneInitError, match="hub:proxmoxApiToken"):
        CloneCloudInitProvider().create({"endpoint": "https://pve:8006", "api_token": None})
