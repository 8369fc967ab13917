"""The sentinel's Proxmox access, and optionally a small VM that runs it (issue 10, `hub:sentinel`).

The sentinel walks the recovery ladder from OUTSIDE the Hub VM (a rollback stops the process that
orders it), so it holds its own identity: a user `<hub user>-sentinel@pve` and a privilege-separated
token, whose only ACL is on `/vms/<hub vmid>`, with the role `<pool>-sentinel` built from
`hubinfra.privileges.SENTINEL_PRIVILEGES` (status, snapshot, rollback, power, description). Not on
`/`, not on the Hub's pool: a sentinel token leaked from its VM can act on the Hub VM, and only as
the ladder does. PVE checks VM privileges on the pool OR on `/vms/<vmid>` (pve-access-control
src/PVE/RPCEnvironment.pm `check_vm_perm`), so the VM path is enough for every call it makes.

The sentinel VM (`hub:sentinel.vm`) is a full clone of the template on the management vnet, in no
pool: the Hub's token, which holds VM privileges on its pool, must not be able to stop or remove the
VM that would recover it. Its cloud-init writes the sentinel's settings (the Hub VM's id and node and
the sentinel token, as the runtime's `HUB_*` settings file), installs the runtime from the same
repository and ref as the Hub (the lock file, as the Hub's image does) and enables
`deploy/systemd/hub-sentinel.service` from that checkout: the unit file is the one reviewed in the
repository at that ref, never a copy here.
"""

from __future__ import annotations

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
)

from hubinfra.access import hub_user_id
from hubinfra.cloudinit import (
    CA_BUNDLE_PATH,
    ETC_DIR,
    SETTINGS_PATH,
    SOURCE_DIR,
    snippet_file_name,
    token_string,
    yaml_dump,
)
from hubinfra.config import SentinelVmConfig, StackConfig
from hubinfra.network import HubNetwork
from hubinfra.privileges import sentinel_privileges

TOKEN_NAME = "sentinel"
# In the runtime's checkout on the sentinel VM (written by the runtime's own deploy/ at that ref).
SENTINEL_UNIT = "deploy/systemd/hub-sentinel.service"
SENTINEL_ENV_PATH = f"{ETC_DIR}/sentinel.env"
# The sentinel's own small database (SQLite), on the sentinel VM's disk, never the Hub's.
SENTINEL_DATABASE_URL = "sqlite:////var/lib/hub/sentinel.db"

_SENTINEL_FIRSTBOOT = """#!/bin/sh
# Idempotent first-boot set-up of the sentinel VM; safe to re-run after a crash at any step.
set -eu
if [ ! -d {src}/.git ]; then
  git init --quiet {src}
  git -C {src} remote add origin {repo}
fi
git -C {src} fetch --quiet --depth 1 origin {ref}
git -C {src} checkout --quiet --detach FETCH_HEAD
# The runtime from its lock file, without the Pulumi program's dependencies (as the Hub's image).
[ -x /opt/hub/uv/bin/uv ] || {{ python3 -m venv /opt/hub/uv && /opt/hub/uv/bin/pip install --quiet uv; }}
cd {src}
UV_PROJECT_ENVIRONMENT=/opt/hub/venv /opt/hub/uv/bin/uv sync --frozen --no-default-groups --no-editable
id hub >/dev/null 2>&1 || useradd --system --home-dir /var/lib/hub --shell /usr/sbin/nologin hub
install -d -o hub -g hub -m 0700 /var/lib/hub
install -m 0644 {src}/{unit} /etc/systemd/system/hub-sentinel.service
systemctl daemon-reload
systemctl enable --now qemu-guest-agent
systemctl enable --now hub-sentinel.service
"""


def _quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"


def sentinel_settings(*, config: StackConfig, token: str) -> str:
    """The sentinel's settings file: the Hub VM it watches, and its own token and database."""
    proxmox = config.proxmox
    doc: dict[str, object] = {
        "environment": str(config.environment),
        "database_url": SENTINEL_DATABASE_URL,
        "proxmox_url": proxmox.endpoint.rstrip("/"),
        "proxmox_api_token": token,
        "proxmox_insecure": proxmox.insecure,
        "node": config.node,
        "vmid": config.hub_vm.vm_id,
    }
    if proxmox.ca_bundle_pem:
        doc["proxmox_ca_bundle"] = CA_BUNDLE_PATH
    return yaml_dump(doc)


def hub_url_for(config: StackConfig, vm: SentinelVmConfig) -> str:
    if vm.hub_url is not None:
        return vm.hub_url
    # The config refuses a dhcp Hub without hubUrl; here the Hub has a static management address.
    return "https://" + config.hub_vm.ipv4_address.split("/", 1)[0]


def sentinel_user_data(*, config: StackConfig, vm: SentinelVmConfig, token: str) -> str:
    files: list[dict[str, str]] = [
        {
            "path": SETTINGS_PATH,
            "permissions": "0600",
            "owner": "root:root",
            "content": sentinel_settings(config=config, token=token),
        },
        {
            # Read by the unit (EnvironmentFile): what the sentinel watches.
            "path": SENTINEL_ENV_PATH,
            "permissions": "0644",
            "owner": "root:root",
            "content": f"HUB_CONFIG_FILE={SETTINGS_PATH}\nHUB_SENTINEL_HUB_URL={hub_url_for(config, vm)}\n",
        },
        {
            "path": "/usr/local/sbin/hub-sentinel-firstboot",
            "permissions": "0755",
            "owner": "root:root",
            "content": _SENTINEL_FIRSTBOOT.format(
                src=SOURCE_DIR,
                repo=_quote(config.runtime.repo_url),
                ref=_quote(config.runtime.ref),
                unit=SENTINEL_UNIT,
            ),
        },
    ]
    if config.proxmox.ca_bundle_pem:
        files.append(
            {
                "path": CA_BUNDLE_PATH,
                "permissions": "0644",
                "owner": "root:root",
                "content": config.proxmox.ca_bundle_pem,
            }
        )
    document: dict[str, object] = {
        "hostname": config.sentinel_vm_name,
        "manage_etc_hosts": True,
        "timezone": "UTC",
        "package_update": True,
        "packages": ["qemu-guest-agent", "git", "python3-venv"],
        "write_files": files,
        "runcmd": [["/usr/local/sbin/hub-sentinel-firstboot"]],
    }
    if config.hub_vm.ssh_keys:
        document["ssh_authorized_keys"] = list(config.hub_vm.ssh_keys)
    return "#cloud-config\n" + yaml_dump(document, width=1000)


class SentinelAccess(pulumi.ComponentResource):
    """The sentinel's role, user, privilege-separated token and its ACLs on the Hub VM only."""

    token_id: pulumi.Output[str]
    token: pulumi.Output[str]

    def __init__(
        self,
        name: str,
        *,
        config: StackConfig,
        protect: bool,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hub:sentinel:SentinelAccess", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, protect=protect)
        role = proxmoxve.RoleLegacy(
            f"{name}-role",
            role_id=f"{config.pool.id}-sentinel",
            privileges=sentinel_privileges(),
            opts=child,
        )
        user_id = hub_user_id(config.user_id, TOKEN_NAME)
        user = proxmoxve.UserLegacy(
            f"{name}-user",
            user_id=user_id,
            comment=f"Hub sentinel for VM {config.hub_vm.vm_id} (managed by Pulumi); acts only through "
            "its privilege-separated token",
            enabled=True,
            opts=child,
        )
        token = proxmoxve.user.Token(
            f"{name}-token",
            user_id=user.user_id,
            token_name=TOKEN_NAME,
            privileges_separation=True,
            comment=f"Hub sentinel token for VM {config.hub_vm.vm_id} (managed by Pulumi)",
            opts=pulumi.ResourceOptions(parent=self, additional_secret_outputs=["value"]),
        )
        full_token_id = f"{user_id}!{TOKEN_NAME}"
        # The Hub VM's own path only; the VM has no children, so nothing propagates.
        path = f"/vms/{config.hub_vm.vm_id}"
        # Privilege separation: the token's rights are its own ACL intersected with the user's.
        proxmoxve.Acl(
            f"{name}-user-acl",
            path=path,
            role_id=role.role_id,
            user_id=user.user_id,
            propagate=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        proxmoxve.Acl(
            f"{name}-token-acl",
            path=path,
            role_id=role.role_id,
            token_id=token.id.apply(lambda _: full_token_id),
            propagate=False,
            opts=pulumi.ResourceOptions(parent=self),
        )
        self.token_id = pulumi.Output.secret(full_token_id)
        self.token = pulumi.Output.secret(
            token.value.apply(lambda v: token_string(user_id=user_id, token_name=TOKEN_NAME, value=v))
        )
        self.register_outputs({"token_id": self.token_id})


class SentinelVm(pulumi.ComponentResource):
    """A small VM from the template that runs `hubctl sentinel watch` with the sentinel's token."""

    vm_id: pulumi.Output[int]

    def __init__(
        self,
        name: str,
        *,
        config: StackConfig,
        vm: SentinelVmConfig,
        token: pulumi.Output[str],
        network: HubNetwork,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("hub:sentinel:SentinelVm", name, None, opts)
        vm_name = config.sentinel_vm_name
        user_data = pulumi.Output.secret(
            token.apply(lambda value: sentinel_user_data(config=config, vm=vm, token=value))
        )
        snippet = proxmoxve.FileLegacy(
            f"{name}-user-data",
            node_name=config.node,
            datastore_id=config.snippets_datastore,
            content_type="snippets",
            source_raw=FileLegacySourceRawArgs(
                data=user_data,
                file_name=user_data.apply(lambda text: snippet_file_name(vm_name, "user-data", text)),
            ),
            # Content-addressed and kept: see HubVm for why a snippet must outlive its change.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
        )
        mgmt = config.network.management
        gateway = mgmt.gateway if vm.ipv4_address != "dhcp" else None
        machine = proxmoxve.VmLegacy(
            f"{name}-vm",
            name=vm_name,
            node_name=config.node,
            vm_id=vm.vm_id,
            # No pool: the Hub's token (VM privileges on its pool) must not reach its own sentinel.
            description=f"Hub sentinel for VM {config.hub_vm.vm_id}, managed by Pulumi stack "
            f"{pulumi.get_stack()}",
            tags=sorted({"hub", "sentinel", config.environment}),
            clone=VmLegacyCloneArgs(vm_id=config.template_vm_id, full=True, datastore_id=config.datastore),
            agent=VmLegacyAgentArgs(enabled=True, trim=True),
            cpu=VmLegacyCpuArgs(cores=vm.cores, sockets=1, type="host"),
            memory=VmLegacyMemoryArgs(dedicated=vm.memory_mib),
            scsi_hardware="virtio-scsi-single",
            disks=[
                VmLegacyDiskArgs(
                    interface="scsi0", datastore_id=config.datastore, size=vm.disk_gb, discard="on", ssd=True
                )
            ],
            network_devices=[VmLegacyNetworkDeviceArgs(bridge=mgmt.vnet, model="virtio", firewall=True)],
            operating_system=VmLegacyOperatingSystemArgs(type="l26"),
            initialization=VmLegacyInitializationArgs(
                datastore_id=config.datastore,
                ip_configs=[
                    VmLegacyInitializationIpConfigArgs(
                        ipv4=VmLegacyInitializationIpConfigIpv4Args(address=vm.ipv4_address, gateway=gateway)
                    )
                ],
                user_data_file_id=snippet.id,
            ),
            on_boot=True,
            started=True,
            migrate=True,
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=network.ready,
                # As the Hub VM: a changed user data or template never replaces it (rolled out by hand).
                ignore_changes=["clone", "vmId", "initialization.userDataFileId"],
            ),
        )
        network.vm_firewall(
            name,
            vm=machine,
            vm_id=vm.vm_id,
            node=config.node,
            # Reached like a Hub (SSH from management), and it reaches the Hub's API and Proxmox's.
            group=network.hub_group,
            outbound="ACCEPT",
            parent=self,
            address=None if vm.ipv4_address == "dhcp" else vm.ipv4_address,
        )
        self.vm_id = machine.vm_id
        self.register_outputs({"vm_id": self.vm_id})
