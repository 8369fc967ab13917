"""Domain hubs: a full Hub VM for one client, project or region, with its own pool and task network.

Declared as a list in the stack config (`hub:domainHubs`): adding an item and running `pulumi up`
spawns the hub, removing it destroys it. Each gets its own pool and token (scoped to that pool and its
own vnet) and its own isolated network for its task VMs; its API faces management like the main
Hub's. A domain hub runs in its stack's environment with its own hub type (`client`, `project` or
`geographic`), a pair hubcore.contract allows in production and development alike.
"""

from __future__ import annotations

import pulumi

from hubinfra.access import HubAccess, hub_user_id
from hubinfra.api_token import BootstrapToken
from hubinfra.config import DomainHub, StackConfig
from hubinfra.hub_vm import HubVm, HubVmSpec
from hubinfra.network import HubNetwork

# The type token is the one this component had when it lived in hubinfra.experiments. It is part of
# every child's URN: changing it would make Pulumi see new resources and replace each domain hub's
# VM, pool and token on the next `pulumi up` (or needs `aliases=[pulumi.Alias(type_=...)]`).
TYPE_TOKEN = "hub:experiments:DomainSpecificHub"


class DomainSpecificHub(pulumi.ComponentResource):
    """A client, project or geographic hub: a full Hub VM with its own pool and task network."""

    vm_id: pulumi.Output[int]
    api_token: pulumi.Output[str] | None

    def __init__(
        self,
        name: str,
        *,
        hub: DomainHub,
        config: StackConfig,
        access: HubAccess,
        network: HubNetwork,
        deploy_files: dict[str, str],
        api_token: pulumi.Output[BootstrapToken] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__(TYPE_TOKEN, name, None, opts)
        net = network.isolated[hub.name]
        pool_id = f"{config.pool.id}-{hub.type}-{hub.name}"
        grant = access.grant(
            f"{name}-access",
            pool_id=pool_id,
            comment=f"Hub for {hub.type} '{hub.label}'",
            user_id=hub_user_id(config.user_id, f"{hub.type}-{hub.name}"),
            vnet_paths=[network.vnet_path(net.vnet)],
            parent=self,
        )
        spec = HubVmSpec(
            name=f"{config.hub_vm.name}-{hub.name}",
            vm_id=hub.vm_id,
            cores=hub.cores,
            memory_mib=hub.memory_mib,
            disk_gb=hub.disk_gb,
            hub_type=hub.type,
            hub_label=hub.label,
            checkpoints=config.checkpoints,
            params=hub.params,
            tags=[hub.type, f"{hub.type}-{hub.name}"],
            api_token_sha256=None if api_token is None else api_token.apply(lambda t: t.sha256),
            pool=pool_id,
            task_networks=(net.vnet,),
        )
        # Its own bootstrap token (derived from its own name): no hub's token opens another hub.
        self.api_token = (
            None if api_token is None else pulumi.Output.secret(api_token.apply(lambda t: t.token))
        )
        # The domain hub's API faces management like the main Hub; its task VMs use its own vnet.
        self.hub = HubVm(
            f"{name}-hub",
            spec=spec,
            config=config,
            pool_id=grant.pool_id,
            token=grant.token,
            bridge=network.management_vnet,
            deploy_files=deploy_files,
            opts=pulumi.ResourceOptions(parent=self),
        )
        network.vm_firewall(
            name,
            vm=self.hub.vm,
            vm_id=hub.vm_id,
            node=config.node,
            group=network.hub_group,
            outbound="ACCEPT",
            parent=self,
        )
        self.vm_id = self.hub.vm_id
        self.pool_id = grant.pool_id
        self.register_outputs({"vm_id": self.vm_id, "pool_id": self.pool_id})
