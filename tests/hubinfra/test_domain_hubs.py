"""Domain hubs under Pulumi mocks: moving the component to its own module changed none of its URNs."""

from __future__ import annotations

from typing import Any

from hubinfra.domain_hubs import TYPE_TOKEN, DomainSpecificHub
from tests.hubinfra.harness import run_program

# The token the component was registered with before it left hubinfra.experiments. Stacks already
# deployed hold URNs with it; a different token would make `pulumi up` replace every domain hub.
DEPLOYED_TYPE = "hub:experiments:DomainSpecificHub"


def _acme(config: dict[str, Any]) -> None:
    config["hub:domainHubs"] = [{"name": "acme", "type": "client", "label": "Acme", "vmId": 1161}]


def test_domain_hub_keeps_its_deployed_type_token_and_urns() -> None:
    assert TYPE_TOKEN == DEPLOYED_TYPE
    assert DomainSpecificHub.__module__ == "hubinfra.domain_hubs"
    run = run_program("dev", edit=_acme)
    assert run.exit_code is None, run.errors
    hub = run.one(DEPLOYED_TYPE, "acme")
    assert hub.name == "hub-client-acme"
    urn = f"urn:pulumi:dev::hub::hub:stack:HubStack${DEPLOYED_TYPE}::hub-client-acme"
    children = [r for r in run.resources if r.parent == urn]
    assert {r.type for r in children} >= {"hub:access:PoolGrant", "hub:hub_vm:HubVm"}, children
    # The domain hub's own VM is still where the state says: type chain through the component.
    vm = run.one("proxmoxve:index/vmLegacy:VmLegacy", "hub-client-acme")
    assert vm.parent.startswith(f"urn:pulumi:dev::hub::{DEPLOYED_TYPE}$hub:hub_vm:HubVm::"), vm.parent
