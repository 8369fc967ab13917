"""Quotas: the program refuses before creating anything, naming the limit."""

from __future__ import annotations

from typing import Any

from tests.infra.harness import run_program


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
    assert run.exit_code == 1
    assert len(run.errors) == 1
    assert run.errors[0].startswith("hub:quotas.vms: the 21 declared VMs need 21, the limit is 20")
    assert run.resources == []


def test_core_quota_names_the_cores_limit() -> None:
    def edit(config: dict[str, Any]) -> None:
        config["hub:quotas"] = dict(config["hub:quotas"], cores=10)
        _domain_hubs(1)(config)

    run = run_program("prod", edit=edit)
    assert run.exit_code == 1
    assert run.errors[0].startswith("hub:quotas.cores: the 2 declared VMs need 12, the limit is 10")
    assert run.resources == []
