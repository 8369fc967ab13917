"""Experimental hubs: full clones of a Hub checkpoint, to try a change on a disposable copy.

Declared as a list in the stack config (`hub:experiments`): adding an item and running `pulumi up`
spawns the hub, removing it destroys it. Each gets its own pool and token (scoped to that pool and
its own vnet), and its own isolated network. An experimental hub sits on that network behind
`<zone>-xhub`: the task VM policy plus tcp/8006 to `hub:network.proxmoxApi`, because it checkpoints
itself. (Domain hubs, the other kind declared from a list, live in hubinfra.domain_hubs.)

An experimental hub is a `SnapshotClone` (hubinfra.pve_objects): pulumi-proxmoxve's `cloned.Vm`,
the only provider resource that clones from a snapshot, panics on create (see that module). The
clone inherits the source's cloud-init drive and `cicustom` (the source's user data: its settings
file and token), its firewall file, and its `protection`/`onboot`/`startup`. So the clone is always
created stopped, the inherited firewall rules and ipsets are removed before its own are declared,
and `CloneCloudInit` (hubinfra.clone_init) then points it at its own snippets
(settings with environment `experimental` and hub type `development`, its own vmid, token,
experiment name and params), gives it its own SMBIOS uuid and an address on its isolated network,
and only then starts it. The settings name that uuid (`vm_uuid`); `hub-identity-check` refuses to
start the runtime on any other VM, so a clone that somehow boots with inherited settings stays
inert. See docs/infrastructure.md.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Mapping
from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve
from pulumi_proxmoxve import FileLegacySourceRawArgs

from hubcore.contract import EXPERIMENT_HUB_TYPE, Environment
from hubinfra.access import HubAccess, hub_user_id
from hubinfra.clone_init import CloneCloudInit
from hubinfra.cloudinit import (
    CA_BUNDLE_PATH,
    RuntimeSettings,
    hub_vm_uuid,
    instance_id_for,
    render_clone_user_data,
    render_meta_data,
    snippet_file_name,
)
from hubinfra.config import CheckpointPolicy, Experiment, StackConfig
from hubinfra.network import HUB_HOST_OFFSET, HubNetwork, IsolatedNet
from hubinfra.pve_objects import SnapshotClone
from hubinfra.quotas import Demand, pool_limits

# Experiments are judged over days; they checkpoint like development hubs: only when asked.
EXPERIMENT_CHECKPOINTS = CheckpointPolicy(schedule="manual")
# Host part of a clone's address on its own isolated /24 (.1 is the gateway).
CLONE_HOST_OFFSET = HUB_HOST_OFFSET


def clone_ipconfig(net: IsolatedNet) -> str:
    """`ipconfig0` for a clone: a fixed address on its isolated network, never the source's.

    The same address (`IsolatedNet.hub_address`) is the one the hosts' firewall lets reach the API.
    """
    subnet = ipaddress.ip_network(net.cidr)
    return f"ip={net.hub_address}/{subnet.prefixlen},gw={net.gateway}"


class ExperimentalHub(pulumi.ComponentResource):
    vm_id: pulumi.Output[int]
    settings: pulumi.Output[str]
    user_data: pulumi.Output[str]
    vm_uuid: str

    def __init__(
        self,
        name: str,
        *,
        experiment: Experiment,
        config: StackConfig,
        access: HubAccess,
        network: HubNetwork,
        api_token: pulumi.Output[str] | None = None,
        operator: Mapping[str, Any],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hub:experiments:ExperimentalHub", name, None, opts)
        net = network.isolated[experiment.name]
        source_vm_id = experiment.source_vm_id or config.hub_vm.vm_id
        vm_name = f"{config.hub_vm.name}-exp-{experiment.name}"
        self.vm_uuid = hub_vm_uuid(stack=pulumi.get_stack(), vm_id=experiment.vm_id, name=vm_name)
        pool_id = f"{config.pool.id}-exp-{experiment.name}"
        grant = access.grant(
            f"{name}-access",
            pool_id=pool_id,
            comment=f"Hub experiment {experiment.name} from {experiment.checkpoint}",
            # Its own user: nothing the experiment holds is the production Hub's identity.
            user_id=hub_user_id(config.user_id, f"exp-{experiment.name}"),
            vnet_paths=[network.vnet_path(net.vnet)],
            # Experiments are disposable by design: never protected, whatever the stack.
            protect=False,
            parent=self,
        )
        vm = SnapshotClone(
            f"{name}-vm",
            access=operator,
            node=config.node,
            vmid=experiment.vm_id,
            source_vmid=source_vm_id,
            snapshot=experiment.checkpoint,
            datastore=config.datastore,
            pool=grant.pool_id,
            vm_name=vm_name,
            description=f"Experimental hub '{experiment.name}': full clone of VM {source_vm_id} at "
            f"checkpoint {experiment.checkpoint} (managed by Pulumi)",
            tags=sorted({"hub", "experimental", f"exp-{experiment.name}"}),
            cores=experiment.cores or config.hub_vm.cores,
            memory=experiment.memory_mib or config.hub_vm.memory_mib,
            # Replace the source's management NIC: the clone lives on its own isolated vnet only.
            bridge=net.vnet,
            # Never started by this resource (there is no `started` to drift): CloneCloudInit starts
            # it once its own cloud-init is attached. Replaced by deleting first: same vmid.
            opts=pulumi.ResourceOptions(
                parent=self, depends_on=[grant, *network.ready], delete_before_replace=True
            ),
        )
        firewall = network.vm_firewall(
            name,
            vm=vm,
            vm_id=experiment.vm_id,
            node=config.node,
            # A Hub, not a task VM: it must reach the Proxmox API (and nothing else new).
            group=network.xhub_group,
            outbound="DROP",
            parent=self,
            address=net.hub_address,
        )
        proxmox = config.proxmox
        # The clone's own size, as quotas.demands counts it (its disk is the source's).
        hub = config.hub_vm
        own = Demand(
            vm_name, experiment.cores or hub.cores, experiment.memory_mib or hub.memory_mib, hub.disk_gb
        )
        limits = pool_limits(config, own)

        def render(token_value: str) -> str:
            return RuntimeSettings(
                environment=Environment.EXPERIMENTAL,
                proxmox_url=proxmox.endpoint,
                proxmox_api_token=token_value,
                proxmox_insecure=proxmox.insecure,
                proxmox_ca_bundle=CA_BUNDLE_PATH if proxmox.ca_bundle_pem else None,
                node=config.node,
                vmid=experiment.vm_id,
                vm_uuid=self.vm_uuid,
                checkpoints=EXPERIMENT_CHECKPOINTS,
                # Never the source's type: a clone of the production Hub is not the production Hub.
                hub_type=EXPERIMENT_HUB_TYPE,
                hub_label=config.hub_label,
                experiment=experiment.name,
                source_vmid=source_vm_id,
                source_checkpoint=experiment.checkpoint,
                params={**config.runtime.params, **experiment.params},
                pool=pool_id,
                task_template_vmid=config.task_template_vm_id,
                task_networks=(net.vnet,),
                pool_limits=limits,
            ).render()

        def user_data_for(settings_text: str) -> str:
            return render_clone_user_data(
                hostname=vm_name, settings_text=settings_text, ca_bundle_pem=proxmox.ca_bundle_pem
            )

        self.settings = pulumi.Output.secret(grant.token.apply(render))
        self.user_data = pulumi.Output.secret(self.settings.apply(user_data_for))
        # Content-addressed names, kept on delete: see HubVm for why a snippet must outlive its change.
        snippet_opts = pulumi.ResourceOptions(parent=self, retain_on_delete=True)
        user_snippet = proxmoxve.FileLegacy(
            f"{name}-user-data",
            node_name=config.node,
            datastore_id=config.snippets_datastore,
            content_type="snippets",
            source_raw=FileLegacySourceRawArgs(
                data=self.user_data,
                file_name=self.user_data.apply(lambda text: snippet_file_name(vm_name, "user-data", text)),
            ),
            opts=snippet_opts,
        )
        meta = self.user_data.apply(
            lambda text: render_meta_data(instance_id=instance_id_for(vm_name, text), hostname=vm_name)
        )
        meta_snippet = proxmoxve.FileLegacy(
            f"{name}-meta-data",
            node_name=config.node,
            datastore_id=config.snippets_datastore,
            content_type="snippets",
            source_raw=FileLegacySourceRawArgs(
                data=meta, file_name=meta.apply(lambda text: snippet_file_name(vm_name, "meta-data", text))
            ),
            opts=snippet_opts,
        )
        self.cloud_init = CloneCloudInit(
            f"{name}-cloud-init",
            endpoint=proxmox.endpoint,
            insecure=proxmox.insecure,
            api_token=api_token,
            node=config.node,
            vmid=experiment.vm_id,
            clone_of=f"{source_vm_id}@{experiment.checkpoint}",
            datastore=config.datastore,
            cicustom=pulumi.Output.all(user_snippet.id, meta_snippet.id).apply(
                lambda ids: f"user={ids[0]},meta={ids[1]}"
            ),
            ipconfig0=clone_ipconfig(net),
            vm_uuid=self.vm_uuid,
            # The content itself, hashed: a params change updates the clone even if a name did not move.
            user_data_sha256=self.user_data.apply(lambda text: hashlib.sha256(text.encode()).hexdigest()),
            start=experiment.start,
            opts=pulumi.ResourceOptions(
                parent=self,
                # Started only behind its firewall, and configured afresh whenever the clone is.
                depends_on=[vm, user_snippet, meta_snippet, *firewall],
                replace_with=[vm],
            ),
        )
        self.vm_id = vm.vmid
        self.register_outputs({"vm_id": self.vm_id, "settings": self.settings})
