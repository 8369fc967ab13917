"""Issue 11: every Hub's settings file carries its pool, task template, task networks and pool limits.

The limits are what `hub:quotas` leaves once every VM the stack declares is counted; the runtime reads
them as HUB_POOL_MAX_CORES, HUB_POOL_MAX_MEMORY_MIB, HUB_POOL_MAX_DISK_GB and HUB_POOL_MAX_MACHINES.
"""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from hubinfra.cloudinit import SETTINGS_PATH, parse_user_data
from tests.hubinfra.harness import Run, run_program
from tests.hubinfra.test_program import settings_of, user_data

FILE = "proxmoxve:index/fileLegacy:FileLegacy"
LIMIT_KEYS = ("pool_max_cores", "pool_max_memory_mib", "pool_max_disk_gb", "pool_max_machines")


def quotas_and_hubs(config: dict[str, Any]) -> None:
    config["hub:quotas"] = {"cores": 100, "memoryMib": 200_000, "diskGb": 3000, "vms": 10}
    config["hub:taskTemplateVmId"] = 9100
    config["hub:experiments"] = [
        {"name": "alpha", "checkpoint": "hub-" + "a" * 32, "vmId": 2100, "cores": 6, "memoryMib": 12288}
    ]
    config["hub:domainHubs"] = [
        {
            "name": "acme",
            "type": "client",
            "label": "ACME",
            "vmId": 2200,
            "cores": 4,
            "memoryMib": 8192,
            "diskGb": 60,
        }
    ]


@pytest.fixture(scope="module")
def run() -> Run:
    result = run_program("prod", edit=quotas_and_hubs)
    assert result.exit_code is None, result.errors
    return result


def clone_settings(run: Run) -> dict[str, Any]:
    document = parse_user_data(run.one(FILE, "exp-alpha-user-data").inputs["sourceRaw"]["data"])
    files = {f["path"]: f for f in document["write_files"]}
    loaded: dict[str, Any] = yaml.safe_load(files[SETTINGS_PATH]["content"])
    return loaded


def limits(settings: dict[str, Any]) -> dict[str, int]:
    return {k: settings[k] for k in LIMIT_KEYS}


def test_limits_are_the_quota_less_the_hubs_own_vm(run: Run) -> None:
    # Pulumi.prod.yaml: the Hub VM has 8 cores, 16384 MiB, 200 GB; the clone's disk is the Hub's.
    assert limits(settings_of(user_data(run, "hub-hub"))) == {
        "pool_max_cores": 100 - 8,
        "pool_max_memory_mib": 200_000 - 16384,
        "pool_max_disk_gb": 3000 - 200,
        "pool_max_machines": 10 - 1,
    }
    assert limits(settings_of(user_data(run, "hub-client-acme-hub"))) == {
        "pool_max_cores": 100 - 4,
        "pool_max_memory_mib": 200_000 - 8192,
        "pool_max_disk_gb": 3000 - 60,
        "pool_max_machines": 10 - 1,
    }
    assert limits(clone_settings(run)) == {
        "pool_max_cores": 100 - 6,
        "pool_max_memory_mib": 200_000 - 12288,
        "pool_max_disk_gb": 3000 - 200,
        "pool_max_machines": 10 - 1,
    }


def test_adding_a_hub_changes_no_other_hubs_limits(run: Run) -> None:
    def more(config: dict[str, Any]) -> None:
        quotas_and_hubs(config)
        config["hub:domainHubs"].append({"name": "beta", "type": "project", "label": "Beta", "vmId": 2300})

    bigger = run_program("prod", edit=more)
    assert bigger.exit_code is None, bigger.errors
    for vm in ("hub-hub", "hub-client-acme-hub"):
        assert settings_of(user_data(bigger, vm)) == settings_of(user_data(run, vm))


def test_each_hub_names_its_own_pool_template_and_task_networks(run: Run) -> None:
    main = settings_of(user_data(run, "hub-hub"))
    assert main["pool"] == "hub-prod"
    assert main["task_template_vmid"] == 9100
    assert main["task_networks"] == ["hptask1", "hptask2"]
    domain = settings_of(user_data(run, "hub-client-acme-hub"))
    assert domain["pool"] == "hub-prod-client-acme"
    clone = clone_settings(run)
    assert clone["pool"] == "hub-prod-exp-alpha"
    # A domain hub and an experiment attach task machines to their own isolated vnet only.
    for vnet in (*domain["task_networks"], *clone["task_networks"]):
        assert run.dynamic(f"vnet-{vnet}"), f"{vnet} is not a vnet the stack declares"
    assert len(clone["task_networks"]) == 1 and clone["task_networks"] != domain["task_networks"]
    assert not set(domain["task_networks"]) & set(main["task_networks"])


def test_the_pool_keys_match_the_pools_pulumi_declares(run: Run) -> None:
    pools = {r.inputs["poolId"] for r in run.of_type("proxmoxve:index/poolLegacy:PoolLegacy")}
    declared = {
        settings_of(user_data(run, "hub-hub"))["pool"],
        settings_of(user_data(run, "hub-client-acme-hub"))["pool"],
        clone_settings(run)["pool"],
    }
    assert declared == pools


def test_without_a_task_template_the_key_is_absent(prod: Run) -> None:
    settings = settings_of(user_data(prod, "hub-hub"))
    assert "task_template_vmid" not in settings
    # Pulumi.prod.yaml quotas: 64 cores, 131072 MiB, 2000 GB, 20 VMs, less the Hub VM.
    assert limits(settings) == {
        "pool_max_cores": 64 - 8,
        "pool_max_memory_mib": 131072 - 16384,
        "pool_max_disk_gb": 2000 - 200,
        "pool_max_machines": 20 - 1,
    }


def test_a_task_template_that_is_the_hub_vm_is_refused() -> None:
    def edit(config: dict[str, Any]) -> None:
        config["hub:taskTemplateVmId"] = 100

    result = run_program("prod", edit=edit)
    assert result.exit_code == 32
    assert result.errors[0].startswith("hub:taskTemplateVmId")
