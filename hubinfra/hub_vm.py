"""HubVm: a Hub VM cloned from the template, configured by cloud-init.

The user data (which carries the runtime's settings file and therefore the API token) is uploaded as
a snippet over the provider's SSH connection and stays a Pulumi secret end to end. Safety options
follow the stack: production VMs are protected (in Pulumi and in Proxmox) and start on boot.

Lifecycle (bpg proxmoxtf/resource/vm/vm.go marks `clone.*`, `vm_id` and
`initialization.user_data_file_id` ForceNew, and `node_name` unless `migrate`):

- The snippet's file name is content-addressed (`<vm>-user-data-<sha256[:12]>.yaml`) and the file is
  kept on delete. With one fixed name, a changed user data replaced the file create-before-delete by
  the same path: Pulumi wrote the new file, then deleted "the old one", i.e. the new one, and PVE,
  which reads the snippet at every start (qemu-server cloud-init `cicustom`), could no longer start,
  reboot or roll back the Hub. Now the old file stays where the VM points.
- The VM ignores changes to its user-data file id, its clone block (template, datastore, node of
  the clone) and its vm id: none of them may replace a Hub that holds checkpoints and a database.
  A changed configuration is rolled out by an explicit step (docs/operator-guide.md "Rolling out a
  configuration change"), and the VM moves between nodes by migration (`migrate=True`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve
from pulumi_proxmoxve import (
    FileLegacySourceRawArgs,
    VmLegacyAgentArgs,
    VmLegacyCloneArgs,
    VmLegacyCpuArgs,
    VmLegacyDiskArgs,
    VmLegacyInitializationArgs,
    VmLegacyInitializationIpConfigArgs,
    VmLegacyInitializationIpConfigIpv4Args,
    VmLegacyMemoryArgs,
    VmLegacyNetworkDeviceArgs,
    VmLegacyOperatingSystemArgs,
    VmLegacySmbiosArgs,
    VmLegacyStartupArgs,
)

from hubinfra.clone_init import CLOUDINIT_INTERFACE
from hubinfra.cloudinit import (
    CA_BUNDLE_PATH,
    RuntimeSettings,
    hub_vm_uuid,
    render_user_data,
    snippet_file_name,
)
from hubinfra.config import CheckpointPolicy, ParamValue, StackConfig
from hubinfra.quotas import Demand, pool_limits


@dataclass(frozen=True, slots=True)
class HubVmSpec:
    """What differs between the main Hub and a domain hub."""

    name: str
    vm_id: int
    cores: int
    memory_mib: int
    disk_gb: int
    hub_type: str
    hub_label: str
    checkpoints: CheckpointPolicy
    params: Mapping[str, ParamValue]
    tags: Sequence[str]
    ipv4_address: str = "dhcp"
    gateway: str | None = None
    # SHA-256 (hex) of the bootstrap API token's secret (hubinfra/api_token.py), which the runtime
    # stores at start (TokenStore.ensure); None: no bootstrap token. An Output: it comes from a secret.
    api_token_sha256: pulumi.Input[str] | None = None
    # Task machines (issue 11): the hub's own pool and the vnets its task machines attach to.
    pool: str | None = None
    task_networks: tuple[str, ...] = ()


# VM inputs a later change must never turn into a replacement (see the module docstring), and the
# description: the sentinel keeps its lease and recovery journal there (issue 10). The bpg provider
# reads `description` back from the VM's config on refresh and sends it on update when it differs
# (terraform-provider-proxmox proxmoxtf/resource/vm/vm.go: mkDescription, set from
# vmConfig.Description in the read, `d.HasChange(mkDescription)` in the update), so without this
# every `pulumi up` would put the declared text back and erase them.
IGNORED_VM_CHANGES = ("clone", "vmId", "initialization.userDataFileId", "description")


class HubVm(pulumi.ComponentResource):
    vm_id: pulumi.Output[int]
    node: pulumi.Output[str]
    ipv4_addresses: pulumi.Output[list[str]]
    user_data: pulumi.Output[str]
    vm_uuid: str

    def __init__(
        self,
        name: str,
        *,
        spec: HubVmSpec,
        config: StackConfig,
        pool_id: pulumi.Input[str],
        token: pulumi.Output[str],
        bridge: str,
        deploy_files: Mapping[str, str],
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hub:hub_vm:HubVm", name, None, opts)
        production = config.is_production
        proxmox = config.proxmox
        # Named in the settings file; a clone of this VM gets another uuid and refuses the file.
        self.vm_uuid = hub_vm_uuid(stack=pulumi.get_stack(), vm_id=spec.vm_id, name=spec.name)

        limits = pool_limits(config, Demand(spec.name, spec.cores, spec.memory_mib, spec.disk_gb))

        def user_data_for(args: tuple[str, str | None]) -> str:
            token_value, api_token_sha256 = args
            settings = RuntimeSettings(
                environment=config.environment,
                proxmox_url=proxmox.endpoint,
                proxmox_api_token=token_value,
                proxmox_insecure=proxmox.insecure,
                proxmox_ca_bundle=CA_BUNDLE_PATH if proxmox.ca_bundle_pem else None,
                node=config.node,
                vmid=spec.vm_id,
                vm_uuid=self.vm_uuid,
                checkpoints=spec.checkpoints,
                hub_type=spec.hub_type,
                hub_label=spec.hub_label,
                params={**config.runtime.params, **spec.params},
                api_token_sha256=api_token_sha256,
                pool=spec.pool,
                task_template_vmid=config.task_template_vm_id,
                task_networks=spec.task_networks,
                pool_limits=limits,
            )
            return render_user_data(
                hostname=spec.name,
                settings=settings,
                repo_url=config.runtime.repo_url,
                ref=config.runtime.ref,
                ssh_keys=list(config.hub_vm.ssh_keys),
                deploy_files=deploy_files,
                ca_bundle_pem=proxmox.ca_bundle_pem,
            )

        sha256: pulumi.Output[str | None] = pulumi.Output.from_input(spec.api_token_sha256)
        self.user_data = pulumi.Output.secret(
            pulumi.Output.all(token, sha256).apply(lambda a: user_data_for((a[0], a[1])))
        )
        self.snippet_file_name = self.user_data.apply(
            lambda text: snippet_file_name(spec.name, "user-data", text)
        )
        snippet = proxmoxve.FileLegacy(
            f"{name}-user-data",
            node_name=config.node,
            datastore_id=config.snippets_datastore,
            content_type="snippets",
            source_raw=FileLegacySourceRawArgs(data=self.user_data, file_name=self.snippet_file_name),
            # Kept when replaced or removed: the VM (or a rollback of it) may still point at it.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        self.user_data_file_id = snippet.id
        ipv4 = VmLegacyInitializationIpConfigIpv4Args(address=spec.ipv4_address, gateway=spec.gateway)
        vm = proxmoxve.VmLegacy(
            f"{name}-vm",
            name=spec.name,
            node_name=config.node,
            vm_id=spec.vm_id,
            pool_id=pool_id,
            description=f"Hub ({spec.hub_type}: {spec.hub_label}), managed by Pulumi stack "
            f"{pulumi.get_stack()}",
            tags=sorted({"hub", config.environment, *spec.tags}),
            clone=VmLegacyCloneArgs(vm_id=config.template_vm_id, full=True, datastore_id=config.datastore),
            agent=VmLegacyAgentArgs(enabled=True, trim=True),
            cpu=VmLegacyCpuArgs(cores=spec.cores, sockets=1, type="host"),
            memory=VmLegacyMemoryArgs(dedicated=spec.memory_mib),
            scsi_hardware="virtio-scsi-single",
            disks=[
                VmLegacyDiskArgs(
                    interface="scsi0",
                    datastore_id=config.datastore,
                    size=spec.disk_gb,
                    discard="on",
                    iothread=True,
                    ssd=True,
                )
            ],
            network_devices=[VmLegacyNetworkDeviceArgs(bridge=bridge, model="virtio", firewall=True)],
            operating_system=VmLegacyOperatingSystemArgs(type="l26"),
            smbios=VmLegacySmbiosArgs(uuid=self.vm_uuid),
            initialization=VmLegacyInitializationArgs(
                # Explicit, so clones of this VM (experimental hubs) know where the drive is.
                interface=CLOUDINIT_INTERFACE,
                datastore_id=config.datastore,
                ip_configs=[VmLegacyInitializationIpConfigArgs(ipv4=ipv4)],
                user_data_file_id=snippet.id,
            ),
            on_boot=production,
            protection=production,
            started=True,
            startup=VmLegacyStartupArgs(order=1, up_delay=30) if production else None,
            # A Hub must never be force-stopped mid-checkpoint on destroy: shut it down cleanly.
            stop_on_destroy=False,
            # A node change migrates the Hub instead of re-creating it (ForceNew without this).
            migrate=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                protect=production,
                retain_on_delete=production,
                ignore_changes=list(IGNORED_VM_CHANGES),
            ),
        )
        self.vm = vm
        self.vm_id = vm.vm_id
        self.node = vm.node_name
        self.ipv4_addresses = vm.ipv4_addresses.apply(
            lambda groups: [a for group in (groups or []) for a in group if a and a != "127.0.0.1"]
        )
        self.register_outputs({"vm_id": self.vm_id, "node": self.node, "ipv4_addresses": self.ipv4_addresses})
