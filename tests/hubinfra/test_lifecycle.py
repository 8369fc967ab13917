"""Changing a key that used to replace the Hub VM now replaces nothing (Pulumi mocks).

The mocks do not run the engine's diff, so this asserts on what decides it: for each key, the VM
inputs that differ between the two programs must be either ignored (`ignore_changes`) or not
ForceNew in the provider. The ForceNew set is bpg/terraform-provider-proxmox
proxmoxtf/resource/vm/vm.go: `clone` and all its fields (mkClone*), `vm_id` (mkVMID),
`initialization.user_data_file_id` (mkInitializationUserDataFileID), and `node_name` unless
`migrate` is true (the CustomizeDiff on mkNodeName / mkMigrate). Limit: a ForceNew field the
provider adds in a later version is not in this list.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.hubinfra.harness import Run, run_program

VM = "proxmoxve:index/vmLegacy:VmLegacy"
FILE = "proxmoxve:index/fileLegacy:FileLegacy"
FORCE_NEW = ("clone", "vmId", "initialization.userDataFileId", "initialization.type", "nodeName")


def _paths(a: Any, b: Any, prefix: str = "") -> set[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out: set[str] = set()
        for key in set(a) | set(b):
            out |= _paths(a.get(key), b.get(key), f"{prefix}.{key}" if prefix else key)
        return out
    return set() if a == b else {prefix}


def _covered(path: str, ignored: list[str]) -> bool:
    return any(path == i or path.startswith(i + ".") or path.startswith(i + "[") for i in ignored)


def _force_new(path: str) -> bool:
    return any(path == f or path.startswith(f + ".") for f in FORCE_NEW)


def _edit(key: str) -> Any:
    def edit(config: dict[str, Any]) -> None:
        if key == "templateVmId":
            config["hub:templateVmId"] = 9001
        elif key == "datastore":
            config["hub:datastore"] = "ceph-other"
        elif key == "node":
            config["hub:node"] = "pve2"
            config["hub:nodes"] = ["pve1", "pve2"]
        elif key == "vmId":
            config["hub:hubVm"] = {**config["hub:hubVm"], "vmId": 101}
        elif key == "runtime.params":
            config["hub:runtime"] = {**config["hub:runtime"], "params": {"health_interval_seconds": 10}}

    return edit


@pytest.mark.parametrize("key", ["templateVmId", "datastore", "node", "vmId", "runtime.params"])
def test_changing_a_key_replaces_no_hub_vm(prod: Run, key: str) -> None:
    after = run_program("prod", edit=_edit(key))
    assert after.exit_code is None, after.errors
    old, new = prod.one(VM, "hub-hub-vm"), after.one(VM, "hub-hub-vm")
    changed = _paths(old.inputs, new.inputs)
    replacing = [p for p in changed if _force_new(p) and not _covered(p, new.ignore_changes)]
    # node_name is ForceNew only without migrate.
    replacing = [p for p in replacing if not (p == "nodeName" and new.inputs.get("migrate") is True)]
    assert replacing == [], f"{key} would replace the Hub VM through {replacing}"


def test_a_changed_user_data_is_a_new_file_and_the_old_one_stays(prod: Run) -> None:
    after = run_program("prod", edit=_edit("runtime.params"))
    old, new = prod.one(FILE, "hub-hub-user-data"), after.one(FILE, "hub-hub-user-data")
    assert old.inputs["sourceRaw"]["fileName"] != new.inputs["sourceRaw"]["fileName"]
    # Replaced create-before-delete, the old path is NOT the new one, and it is kept on delete:
    # the VM (ignoring the new id) and any rollback of it still find their snippet.
    assert new.retain_on_delete
    vm = after.one(VM, "hub-hub-vm")
    assert "initialization.userDataFileId" in vm.ignore_changes and vm.inputs["migrate"] is True


def test_the_main_hub_user_keeps_its_deployed_urn(prod: Run) -> None:
    """Each hub has its own user now, under its PoolGrant; the main Hub's user used to be a child of
    HubAccess. Without an alias a deployed stack would replace that user (and its token)."""
    users = [r for r in prod.resources if r.type.endswith("UserLegacy")]
    main = [u for u in users if u.name.endswith("-hub-access-user")]
    assert len(main) == 1, [u.name for u in users]
    specs = json.dumps(main[0].aliases)
    assert main[0].name.replace("-hub-access-user", "-access-user") in specs, specs
