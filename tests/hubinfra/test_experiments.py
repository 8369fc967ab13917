"""Experimental hubs get their own cloud-init: settings, token, identity (Pulumi mocks)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from hubinfra.cloudinit import SETTINGS_PATH, hub_vm_uuid, instance_id_for, parse_user_data, snippet_file_name
from tests.hubinfra.harness import OPERATOR_SECRETS, TOKEN_SECRET, Run, run_program, token_secret_for

CLONE = "proxmoxve:cloned/vm:Vm"
FILE = "proxmoxve:index/fileLegacy:FileLegacy"
VM = "proxmoxve:index/vmLegacy:VmLegacy"
CLOUD_INIT = "pulumi-python:dynamic:Resource"
CHECKPOINT = "hub-0123456789abcdef0123456789abcdef"
# The experiment docs/operator-guide.md shows (Pulumi.dev.yaml commits none: its snapshot cannot exist).
FASTER_GATE = {
    "name": "faster-gate",
    "checkpoint": CHECKPOINT,
    "vmId": 1150,
    "params": {"gate_timeout_seconds": 120},
}


def with_faster_gate(config: dict[str, Any]) -> None:
    config["hub:experiments"] = [dict(FASTER_GATE)]


@pytest.fixture(scope="module")
def dev() -> Run:
    """The dev stack with the guide's experiment (this module's `dev`, not the committed file's)."""
    run = run_program("dev", edit=with_faster_gate)
    assert run.exit_code is None, run.errors
    return run


def _settings(user_data: str) -> dict[str, Any]:
    files = {f["path"]: f for f in parse_user_data(user_data)["write_files"]}
    assert files[SETTINGS_PATH]["permissions"] == "0600"
    loaded: dict[str, Any] = yaml.safe_load(files[SETTINGS_PATH]["content"])
    return loaded


def _hub_settings(run: Run) -> dict[str, Any]:
    return _settings(run.one(FILE, "hub-hub-user-data").inputs["sourceRaw"]["data"])


def test_experiment_user_data_is_its_own_and_secret(dev: Run) -> None:
    snippet = dev.one(FILE, "faster-gate-user-data")
    assert "sourceRaw" in snippet.secret_inputs, "the user data carries a token: it must be a secret"
    settings = _settings(snippet.inputs["sourceRaw"]["data"])
    hub = _hub_settings(dev)
    assert settings["environment"] == "experimental"
    assert settings["vmid"] == 1150 != hub["vmid"]
    assert settings["experiment"] == "faster-gate"
    assert settings["params"] == {"health_interval_seconds": 30, "gate_timeout_seconds": 120}
    assert (settings["source_vmid"], settings["source_checkpoint"]) == (1100, CHECKPOINT)
    assert settings["checkpoint_schedule"] == "manual"
    # Its own Proxmox user and token: never the Hub's user, never the Hub's secret.
    secret = token_secret_for("hub-dev-exp-faster-gate")
    assert settings["proxmox_api_token"] == f"hub-dev-exp-faster-gate@pve!hub-dev-exp-faster-gate={secret}"
    assert TOKEN_SECRET not in snippet.inputs["sourceRaw"]["data"]
    # Its own identity: the uuid its clone is given, not the Hub's.
    assert settings["vm_uuid"] == hub_vm_uuid(stack="dev", vm_id=1150, name="hub-dev-exp-faster-gate")
    assert settings["vm_uuid"] != hub["vm_uuid"]


def test_experiment_user_data_never_carries_the_source_token_or_the_operator_token(dev: Run) -> None:
    text = dev.one(FILE, "faster-gate-user-data").inputs["sourceRaw"]["data"]
    assert "hub-dev@pve!hub-dev=" not in text
    assert _hub_settings(dev)["proxmox_api_token"] not in text
    assert OPERATOR_SECRETS["hub:proxmoxApiToken"] not in text
    # The exported settings are the same document, and only as a secret.
    assert "experiments" in dev.secret_outputs
    assert yaml.safe_load(dev.outputs["experiments"]["faster-gate"]["settings"]) == _settings(text)


def test_meta_data_instance_id_follows_the_user_data(dev: Run) -> None:
    user_data = dev.one(FILE, "faster-gate-user-data").inputs["sourceRaw"]["data"]
    meta = yaml.safe_load(dev.one(FILE, "faster-gate-meta-data").inputs["sourceRaw"]["data"])
    assert meta == {
        "instance-id": instance_id_for("hub-dev-exp-faster-gate", user_data),
        "local-hostname": "hub-dev-exp-faster-gate",
    }


def test_clone_is_created_stopped_and_configured_before_it_starts(dev: Run) -> None:
    (clone,) = [r for r in dev.dynamic("vm") if "faster-gate" in r.name]
    # A SnapshotClone (pve_objects) has no `started` input at all: nothing for a refresh to drift.
    assert "started" not in clone.inputs
    assert (clone.inputs["source_vmid"], clone.inputs["snapshot"]) == (1100, CHECKPOINT)
    assert clone.delete_before_replace
    (init,) = [r for r in dev.dynamic("cloud-init") if "faster-gate" in r.name]
    inputs = init.inputs
    assert inputs["vmid"] == 1150
    assert inputs["node"] == "pve-dev"
    assert inputs["clone_of"] == f"1100@{CHECKPOINT}"
    user_text = dev.one(FILE, "faster-gate-user-data").inputs["sourceRaw"]["data"]
    meta_text = dev.one(FILE, "faster-gate-meta-data").inputs["sourceRaw"]["data"]
    name = "hub-dev-exp-faster-gate"
    assert inputs["cicustom"] == (
        f"user=local:snippets/{snippet_file_name(name, 'user-data', user_text)},"
        f"meta=local:snippets/{snippet_file_name(name, 'meta-data', meta_text)}"
    )
    # The content itself is a compared input: a params change reaches the clone.
    assert inputs["user_data_sha256"] == __import__("hashlib").sha256(user_text.encode()).hexdigest()
    settings = _settings(user_text)
    assert inputs["vm_uuid"] == settings["vm_uuid"]
    assert inputs["start"] is True
    # On its own isolated network, never the Hub's management address.
    vnet = dev.outputs["network"]["isolated"]["faster-gate"]
    isolated = dev.one("proxmoxve:sdn/subnet:Subnet", f"subnet-{vnet}")
    assert inputs["ipconfig0"] == f"ip=10.210.50.10/24,gw={isolated.inputs['gateway']}"
    assert "10.10.0." not in inputs["ipconfig0"]
    # The operator's credentials reach it only as a secret.
    assert "api_token" in init.secret_inputs
    # Ordered after the clone, both snippets and the clone's firewall: it never boots unfenced.
    deps = {urn.rsplit("::", 1)[1] for urn in init.dependencies}
    assert {
        "hub-exp-faster-gate-vm",
        "hub-exp-faster-gate-user-data",
        "hub-exp-faster-gate-meta-data",
        "hub-exp-faster-gate-fw-options",
        "hub-exp-faster-gate-fw-rules",
    } <= deps


def test_hub_vm_identity_matches_its_settings_and_cloud_init_slot_is_fixed(prod: Run) -> None:
    vm = prod.one(VM, "hub-hub-vm").inputs
    settings = _hub_settings(prod)
    assert (
        vm["smbios"]["uuid"] == settings["vm_uuid"] == hub_vm_uuid(stack="prod", vm_id=100, name="hub-prod")
    )
    # Clones find the inherited cloud-init drive where CloneCloudInit expects it.
    assert vm["initialization"]["interface"] == "ide2"


def test_prod_experiment_never_sees_the_production_token() -> None:
    def add(config: dict[str, Any]) -> None:
        config["hub:experiments"] = [
            {
                "name": "alpha",
                "checkpoint": "hub-" + "a" * 32,
                "vmId": 2100,
                "params": {"k": "v"},
                "start": False,
            }
        ]

    run = run_program("prod", edit=add)
    assert run.exit_code is None, run.errors
    text = run.one(FILE, "alpha-user-data").inputs["sourceRaw"]["data"]
    settings = _settings(text)
    assert settings["environment"] == "experimental"
    assert settings["vmid"] == 2100
    assert settings["params"]["k"] == "v"
    assert settings["proxmox_api_token"].startswith("hub-exp-alpha@pve!hub-prod-exp-alpha=")
    assert "hub@pve!hub-prod=" not in text and TOKEN_SECRET not in text
    (clone,) = [r for r in run.dynamic("vm") if "alpha" in r.name]
    assert clone.inputs["source_vmid"] == 100
    (init,) = [r for r in run.dynamic("cloud-init") if "alpha" in r.name]
    assert init.inputs["start"] is False


def test_removing_the_experiment_removes_everything_it_declared() -> None:
    def drop(config: dict[str, Any]) -> None:
        config["hub:experiments"] = []

    run = run_program("dev", edit=drop)
    assert run.exit_code is None, run.errors
    assert not [r.name for r in run.resources if "faster-gate" in r.name]
    assert not run.dynamic("cloud-init")
    assert not run.of_type(CLONE)
