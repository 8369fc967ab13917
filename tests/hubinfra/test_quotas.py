"""Quotas: the program refuses before creating anything, naming the limit."""

from __future__ import annotations

from typing import Any

import pytest

from hubinfra.stack import EXIT_ERROR_REPORTED
from tests.hubinfra.harness import run_program


def _domain_hubs(count: int) -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["hub:domainHubs"] = [
            {"name": f"c{i}", "type": "client", "label": f"Client {i}", "vmId": 3000 + i}
            for i in range(count)
        ]

    return edit


def test_within_quota_declares_domain_hubs_with_own_pool_and_network() -> None:
    run = run_program("prod", edit=_domain_hubs(2))
    assert run.exit_code is None, run.errors
    pools = {p.inputs["poolId"] for p in run.of_type("proxmoxve:index/poolLegacy:PoolLegacy")}
    assert pools == {"hub-prod", "hub-prod-client-c0", "hub-prod-client-c1"}
    vms = {v.inputs["vmId"]: v.inputs for v in run.of_type("proxmoxve:index/vmLegacy:VmLegacy")}
    assert set(vms) == {100, 3000, 3001}
    assert vms[3000]["poolId"] == "hub-prod-client-c0"
    assert "client" in vms[3000]["tags"]
    assert set(run.outputs["network"]["isolated"]) == {"c0", "c1"}
    assert run.outputs["network"]["isolated"]["c0"] != run.outputs["network"]["isolated"]["c1"]


def test_quota_exceeded_refuses_before_any_resource() -> None:
    # prod allows 20 VMs; the Hub plus 20 domain hubs is 21.
    run = run_program("prod", edit=_domain_hubs(20))
    assert run.exit_code == EXIT_ERROR_REPORTED
    assert len(run.errors) == 1
    assert run.errors[0].startswith("hub:quotas.vms: the 21 declared VMs need 21, the limit is 20")
    assert run.resources == []


def test_core_quota_names_the_cores_limit() -> None:
    def edit(config: dict[str, Any]) -> None:
        config["hub:quotas"] = dict(config["hub:quotas"], cores=10)
        _domain_hubs(1)(config)

    run = run_program("prod", edit=edit)
    assert run.exit_code == EXIT_ERROR_REPORTED
    assert run.errors[0].startswith("hub:quotas.cores: the 2 declared VMs need 12, the limit is 10")
    assert run.resources == []


# prod declares the Hub VM at 8 cores / 16384 MiB / 200 GB; one client hub adds the floors
# 4 / 8192 / 50, so each quota below is one unit short of the two VMs' total for just that limit.
LIMITS = [
    ("vms", {"vms": 1}, "hub:quotas.vms: the 2 declared VMs need 2, the limit is 1"),
    ("cores", {"cores": 11}, "hub:quotas.cores: the 2 declared VMs need 12, the limit is 11"),
    (
        "memoryMib",
        {"memoryMib": 24575},
        "hub:quotas.memoryMib: the 2 declared VMs need 24576 MiB, the limit is 24575 MiB",
    ),
    ("diskGb", {"diskGb": 249}, "hub:quotas.diskGb: the 2 declared VMs need 250 GB, the limit is 249 GB"),
]


@pytest.mark.parametrize(("limit", "quota", "message"), LIMITS, ids=[case[0] for case in LIMITS])
def test_each_limit_is_named_and_nothing_is_declared(limit: str, quota: dict[str, int], message: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        generous = {"cores": 1000, "memoryMib": 10_000_000, "diskGb": 100_000, "vms": 100}
        config["hub:quotas"] = {**generous, **quota}
        _domain_hubs(1)(config)

    run = run_program("prod", edit=edit)
    assert run.exit_code == EXIT_ERROR_REPORTED
    assert len(run.errors) == 1
    assert run.errors[0].startswith(message), run.errors
    assert run.resources == []


def test_exactly_at_every_limit_is_accepted() -> None:
    def edit(config: dict[str, Any]) -> None:
        config["hub:quotas"] = {"cores": 12, "memoryMib": 24576, "diskGb": 250, "vms": 2}
        _domain_hubs(1)(config)

    run = run_program("prod", edit=edit)
    assert run.exit_code is None, run.errors


def test_experiment_clone_counts_the_source_disk() -> None:
    # A full clone copies the Hub's 200 GB disk even though the experiment declares no disk size.
    def edit(config: dict[str, Any]) -> None:
        config["hub:quotas"] = {"cores": 1000, "memoryMib": 10_000_000, "diskGb": 399, "vms": 100}
        config["hub:experiments"] = [{"name": "alpha", "checkpoint": "hub-" + "a" * 32, "vmId": 2100}]

    run = run_program("prod", edit=edit)
    assert run.exit_code == EXIT_ERROR_REPORTED
    assert run.errors[0].startswith("hub:quotas.diskGb: the 2 declared VMs need 400 GB")
    assert run.resources == []
