"""hub:sentinel (issue 10): the sentinel's own least-privilege access on the Hub VM, and its optional VM."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from hubinfra.cloudinit import SETTINGS_PATH, parse_user_data
from hubinfra.hub_vm import IGNORED_VM_CHANGES
from hubinfra.privileges import (
    FORBIDDEN_PRIVILEGES,
    SENTINEL_PRIVILEGES,
    Scope,
    all_privileges,
    privileges_for,
    sentinel_privileges,
)
from hubinfra.sentinel import SENTINEL_ENV_PATH, SENTINEL_UNIT
from runtime.settings import load_settings
from tests.hubinfra.harness import Run, run_program, token_secret_for

ACL = "proxmoxve:index/acl:Acl"
ROLE = "proxmoxve:index/roleLegacy:RoleLegacy"
USER = "proxmoxve:index/userLegacy:UserLegacy"
TOKEN = "proxmoxve:user/token:Token"
VM = "proxmoxve:index/vmLegacy:VmLegacy"
FILE = "proxmoxve:index/fileLegacy:FileLegacy"
HUB_VMID = 100  # Pulumi.prod.yaml hub:hubVm.vmId


def with_sentinel(sentinel: dict[str, Any]) -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["hub:sentinel"] = sentinel

    return edit


@pytest.fixture(scope="module")
def enabled() -> Run:
    run = run_program("prod", edit=with_sentinel({"enabled": True}))
    assert run.exit_code is None, run.errors
    return run


@pytest.fixture(scope="module")
def with_vm() -> Run:
    run = run_program(
        "prod", edit=with_sentinel({"enabled": True, "vm": {"vmId": 150, "ipv4Address": "10.20.0.15/24"}})
    )
    assert run.exit_code is None, run.errors
    return run


def test_the_sentinel_privileges_are_the_hubs_own_with_a_reason_each() -> None:
    names = sentinel_privileges()
    assert names == sorted(
        {"VM.Audit", "VM.Snapshot", "VM.Snapshot.Rollback", "VM.PowerMgmt", "VM.Config.Options"}
    )
    assert all(len(p.reason.split()) >= 5 and p.scope is Scope.HUB_VM for p in SENTINEL_PRIVILEGES)
    for pve_major in (8, 9):
        assert set(names) <= set(all_privileges(pve_major=pve_major)), "never wider than the Hub itself"
    assert not set(names) & set(FORBIDDEN_PRIVILEGES)
    # The Hub's own roles have nothing on a VM path: HubAccess declares no role for that scope.
    assert privileges_for(Scope.HUB_VM) == []


def test_disabled_by_default_declares_nothing(prod: Run) -> None:
    assert not [r for r in prod.resources if "sentinel" in r.name]
    assert "sentinelTokenId" not in prod.outputs


def test_own_user_role_and_separated_token_on_the_hub_vm_only(enabled: Run) -> None:
    role = enabled.one(ROLE, "sentinel-role").inputs
    assert role["roleId"] == "hub-prod-sentinel"
    assert sorted(role["privileges"]) == sentinel_privileges()
    user = enabled.one(USER, "sentinel-user").inputs
    assert user["userId"] == "hub-sentinel@pve"
    token = enabled.one(TOKEN, "sentinel-token").inputs
    assert token["userId"] == "hub-sentinel@pve"
    assert token["privilegesSeparation"] is True
    acls = [a.inputs for a in enabled.of_type(ACL) if a.inputs["roleId"] == "hub-prod-sentinel"]
    assert {(a.get("userId"), a.get("tokenId")) for a in acls} == {
        ("hub-sentinel@pve", None),
        (None, "hub-sentinel@pve!sentinel"),
    }
    assert {a["path"] for a in acls} == {f"/vms/{HUB_VMID}"}
    assert all(a["propagate"] is False for a in acls)
    # Nothing else is granted to the sentinel's user or token, anywhere.
    sentinel_acls = [
        a.inputs
        for a in enabled.of_type(ACL)
        if "sentinel" in str(a.inputs.get("userId")) + str(a.inputs.get("tokenId"))
    ]
    assert sentinel_acls == acls


def test_outputs_the_token_id_and_token_as_secrets(enabled: Run) -> None:
    assert enabled.outputs["sentinelTokenId"] == "hub-sentinel@pve!sentinel"
    assert enabled.outputs["sentinelToken"] == f"hub-sentinel@pve!sentinel={token_secret_for('sentinel')}"
    assert {"sentinelTokenId", "sentinelToken"} <= enabled.secret_outputs


def test_every_hub_vm_ignores_its_description(prod_exp: Run) -> None:
    # The sentinel's lease and journal live in the description; `pulumi up` must not put it back.
    assert "description" in IGNORED_VM_CHANGES
    hub_vms = prod_exp.of_type(VM)
    assert hub_vms
    for vm in hub_vms:
        assert "description" in vm.ignore_changes, vm.name


def test_the_sentinel_vm_runs_the_unit_with_its_own_token(with_vm: Run) -> None:
    vm = with_vm.one(VM, "sentinel-host-vm")
    assert vm.inputs["vmId"] == 150
    assert "poolId" not in vm.inputs, "outside the Hub's pool: the Hub's token must not reach it"
    assert vm.inputs["clone"]["vmId"] == 9000
    snippet = with_vm.one(FILE, "sentinel-host-user-data")
    assert "sourceRaw" in snippet.secret_inputs
    document = parse_user_data(snippet.inputs["sourceRaw"]["data"])
    files = {f["path"]: f for f in document["write_files"]}
    settings = yaml.safe_load(files[SETTINGS_PATH]["content"])
    assert settings["vmid"] == HUB_VMID
    assert settings["proxmox_api_token"] == f"hub-sentinel@pve!sentinel={token_secret_for('sentinel')}"
    assert settings["database_url"].startswith("sqlite:")
    assert files[SETTINGS_PATH]["permissions"] == "0600"
    assert "HUB_SENTINEL_HUB_URL=https://10.20.0.10\n" in files[SENTINEL_ENV_PATH]["content"]
    firstboot = files["/usr/local/sbin/hub-sentinel-firstboot"]["content"]
    assert f"/opt/hub/src/{SENTINEL_UNIT} /etc/systemd/system/hub-sentinel.service" in firstboot
    assert "systemctl enable --now hub-sentinel.service" in firstboot
    # Its firewall is declared like a Hub's.
    assert with_vm.one("proxmoxve:firewall/optionsLegacy:OptionsLegacy", "sentinel-host-fw-options")


@pytest.mark.parametrize(
    ("sentinel", "hub_address", "key"),
    [
        ({"vm": {"vmId": 150}}, None, "hub:sentinel.enabled"),
        ({"enabled": True, "vm": {"vmId": 100}}, None, "hub:sentinel.vm.vmId"),
        ({"enabled": True, "vm": {"vmId": 150}}, "dhcp", "hub:sentinel.vm.hubUrl"),
        ({"enabled": True, "vm": {"vmId": 150, "cores": 0}}, None, "hub:sentinel.vm.cores"),
    ],
)
def test_bad_sentinel_config_is_one_line_naming_the_key(
    sentinel: dict[str, Any], hub_address: str | None, key: str
) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["hub:sentinel"] = sentinel
        if hub_address is not None:
            config["hub:hubVm"] = {**config["hub:hubVm"], "ipv4Address": hub_address}

    run = run_program("prod", edit=edit)
    assert run.exit_code == 32
    assert len(run.errors) == 1 and run.errors[0].startswith(key), run.errors
    assert run.resources == []


def test_the_sentinel_vms_settings_load_in_the_runtime(
    with_vm: Run, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The settings file the sentinel VM gets is one the runtime accepts (extra="forbid"), naming the Hub VM.
    snippet = with_vm.one(FILE, "sentinel-host-user-data")
    files = {f["path"]: f for f in parse_user_data(snippet.inputs["sourceRaw"]["data"])["write_files"]}
    for key in [k for k in os.environ if k.startswith("HUB_")]:
        monkeypatch.delenv(key)
    path = tmp_path / "hub.yaml"
    path.write_text(files[SETTINGS_PATH]["content"])
    monkeypatch.setenv("HUB_CONFIG_FILE", str(path))
    settings = load_settings()
    assert settings.vmid == HUB_VMID
    assert settings.database_url.startswith("sqlite:")
