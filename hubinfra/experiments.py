"""Experimental hubs (full clones of a checkpoint) and domain hubs (client, project, geographic).

Both are declared from lists in the stack config: adding an item and running `pulumi up` spawns the
hub, removing it destroys it. Each gets its own pool and token (scoped to that pool and its own
vnet), and its own isolated network.

An experimental hub is a `cloned.Vm`: the only resource in pulumi-proxmoxve 8 that clones from a
snapshot. That resource cannot manage cloud-init, so the clone boots with the disk state of the
checkpoint, including the source Hub's settings file. Two things make that safe: the clone sits on
an isolated vnet whose security group drops all traffic to management and the Proxmox API, and it is
created stopped unless `start: true`. Its own settings (environment `experimental`, its token, its
vmid, the parameter overrides) are rendered here and exported as a secret for delivery into the
clone (see docs/infrastructure.md, "Experimental hubs").
"""

from __future__ import annotations

import pulumi
import pulumi_proxmoxve as proxmoxve
from pulumi_proxmoxve.cloned import VmCloneArgs, VmCpuArgs, VmMemoryArgs, VmNetworkArgs

from hubinfra.access import HubAccess
from hubinfra.cloudinit import CA_BUNDLE_PATH, RuntimeSettings
from hubinfra.config import CheckpointPolicy, DomainHub, Experiment, StackConfig
from hubinfra.hub_vm import HubVm, HubVmSpec
from hubinfra.network import HubNetwork

# Experiments are judged over days; they checkpoint like development hubs: only when asked.
EXPERIMENT_CHECKPOINTS = CheckpointPolicy(schedule="manual")


class ExperimentalHub(pulumi.ComponentResource):
    vm_id: pulumi.Output[str]
    settings: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        experiment: Experiment,
        config: StackConfig,
        access: HubAccess,
        network: HubNetwork,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hub:experiments:ExperimentalHub", name, None, opts)
        net = network.isolated[experiment.name]
        source_vm_id = experiment.source_vm_id or config.hub_vm.vm_id
        grant = access.grant(
            f"{name}-access",
            pool_id=f"{config.pool.id}-exp-{experiment.name}",
            comment=f"Hub experiment {experiment.name} from {experiment.checkpoint}",
            vnet_paths=[network.vnet_path(net.vnet)],
            node_paths=[f"/nodes/{config.node}"],
            # Experiments are disposable by design: never protected, whatever the stack.
            protect=False,
            parent=self,
        )
        vm = proxmoxve.cloned.Vm(
            f"{name}-vm",
            resource_id=str(experiment.vm_id),
            node_name=config.node,
            name=f"{config.hub_vm.name}-exp-{experiment.name}",
            description=f"Experimental hub '{experiment.name}': full clone of VM {source_vm_id} at "
            f"checkpoint {experiment.checkpoint} (managed by Pulumi)",
            tags=sorted({"hub", "experimental", f"exp-{experiment.name}"}),
            clone=VmCloneArgs(
                source_vm_id=source_vm_id,
                snapshot_name=experiment.checkpoint,
                full=True,
                pool_id=grant.pool_id,
                target_datastore=config.datastore,
            ),
            cpu=VmCpuArgs(cores=experiment.cores or config.hub_vm.cores),
            memory=VmMemoryArgs(size=experiment.memory_mib or config.hub_vm.memory_mib),
            # Replace the source's management NIC: the clone lives on its own isolated vnet only.
            network={"net0": VmNetworkArgs(bridge=net.vnet, model="virtio", firewall=True)},
            started=experiment.start,
            stop_on_destroy=True,
            purge_on_destroy=True,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[grant, network]),
        )
        network.vm_firewall(
            name,
            vm=vm,
            vm_id=experiment.vm_id,
            node=config.node,
            group=network.task_group,
            outbound="DROP",
            parent=self,
        )
        proxmox = config.proxmox

        def render(token_value: str) -> str:
            return RuntimeSettings(
                environment="experimental",
                proxmox_url=proxmox.endpoint,
                proxmox_api_token=token_value,
                proxmox_insecure=proxmox.insecure,
                proxmox_ca_bundle=CA_BUNDLE_PATH if proxmox.ca_bundle_pem else None,
                node=config.node,
                vmid=experiment.vm_id,
                checkpoints=EXPERIMENT_CHECKPOINTS,
                hub_type=config.hub_type,
                hub_label=config.hub_label,
                experiment=experiment.name,
                params={**config.runtime.params, **experiment.params},
            ).render()

        self.vm_id = vm.resource_id
        self.settings = pulumi.Output.secret(grant.token.apply(render))
        self.register_outputs({"vm_id": self.vm_id, "settings": self.settings})


class DomainSpecificHub(pulumi.ComponentResource):
    """A client, project or geographic hub: a full Hub VM with its own pool and task network."""

    vm_id: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        *,
        hub: DomainHub,
        config: StackConfig,
        access: HubAccess,
        network: HubNetwork,
        deploy_files: dict[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hub:experiments:DomainSpecificHub", name, None, opts)
        net = network.isolated[hub.name]
        grant = access.grant(
            f"{name}-access",
            pool_id=f"{config.pool.id}-{hub.type}-{hub.name}",
            comment=f"Hub for {hub.type} '{hub.label}'",
            vnet_paths=[network.vnet_path(net.vnet)],
            node_paths=[f"/nodes/{config.node}"],
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
