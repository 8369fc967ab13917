"""HubStack: the top component, and reading the `hub:` config out of the Pulumi runtime.

Order matters: the config is validated, the quotas and the isolated network slots are checked, and
only then is the first resource declared, so a refused plan leaves nothing half-created.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve
from pulumi.runtime import config as runtime_config
from pulumi_proxmoxve import ProviderSshArgs

from hubinfra.access import HubAccess
from hubinfra.api_token import SEED_KEY, BootstrapToken, check_seed, derive_api_token
from hubinfra.cloudinit import read_deploy_files
from hubinfra.config import (
    NAMESPACE,
    SECRET_KEYS,
    ConfigError,
    StackConfig,
    decode_config_value,
    parse_stack_config,
)
from hubinfra.domain_hubs import DomainSpecificHub
from hubinfra.experiments import ExperimentalHub
from hubinfra.hub_vm import HubVm, HubVmSpec
from hubinfra.network import HubNetwork, isolated_nets
from hubinfra.pve_objects import operator_props
from hubinfra.quotas import check_quotas
from hubinfra.sentinel import SentinelAccess, SentinelVm

# The Python language host's "error already reported" exit code: with it the engine shows only the
# program's own message; with any other non-zero code it adds a generic second error line.
EXIT_ERROR_REPORTED = 32


def read_stack_config() -> StackConfig:
    """Every `hub:` key the engine passed to this program, validated as one model.

    Pulumi's Config object answers only for keys asked by name; to reject unknown keys we need the
    whole set, which the runtime keeps in its config map (and PULUMI_CONFIG for older engines).
    """
    prefix = f"{NAMESPACE}:"
    merged: dict[str, Any] = {**runtime_config.get_config_env(), **runtime_config.CONFIG.get()}
    for key in sorted(SECRET_KEYS):
        full = f"{prefix}{key}"
        # A value that is not a secret was written in plain text into the stack file (or passed
        # without --secret): refuse it rather than use, log or commit a credential.
        if full in merged and not runtime_config.is_config_secret(full):
            raise ConfigError(
                f"{full}: must be set with `pulumi config set --secret {full} ...`, not in plain text"
            )
    seed = merged.get(f"{prefix}{SEED_KEY}")
    if seed is not None and (problem := check_seed(str(seed))) is not None:
        raise ConfigError(f"{prefix}{SEED_KEY}: {problem}")
    raw = {k.removeprefix(prefix): decode_config_value(v) for k, v in merged.items() if k.startswith(prefix)}
    return parse_stack_config(raw)


MIN_PVE8_RELEASE = (8, 3)


def check_pve_version(*, configured_major: int, version: str | None) -> str:
    """The cluster's version, if `hub:proxmox.pveMajor` matches it; ConfigError naming the key if not.

    pveMajor is config (the roles' privilege names depend on it before anything is read from the
    cluster); the provider's version data source checks it against the cluster at preview and up.
    """
    parts = (version or "").split(".")
    try:
        major, minor = int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
    except ValueError:
        raise ConfigError(f"{NAMESPACE}:proxmox.pveMajor: the cluster reported version {version!r}") from None
    if major != configured_major:
        raise ConfigError(
            f"{NAMESPACE}:proxmox.pveMajor: is {configured_major}, the cluster runs Proxmox VE {version}; "
            f"set it to {major}"
        )
    if major == 8 and (major, minor) < MIN_PVE8_RELEASE:
        raise ConfigError(
            f"{NAMESPACE}:proxmox.pveMajor: the cluster runs Proxmox VE {version}; PVE 8 must be 8.3 or newer"
        )
    return str(version)


def bootstrap_token(seed: pulumi.Output[str] | None, hub_name: str) -> pulumi.Output[BootstrapToken] | None:
    """The hub's first API token, derived from the stack's `hub:apiTokenSeed`; None without a seed."""
    if seed is None:
        return None
    return pulumi.Output.secret(seed.apply(lambda value: derive_api_token(value, hub_name)))


class HubStack(pulumi.ComponentResource):
    api_token: pulumi.Output[str] | None

    def __init__(self, name: str, *, config: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        check_quotas(config)
        isolated = isolated_nets(config)
        deploy_files = read_deploy_files()
        super().__init__("hub:stack:HubStack", name, None, opts)

        secrets = pulumi.Config(NAMESPACE)
        # None falls back to PROXMOX_VE_API_TOKEN in the environment; never a committed value.
        operator_token = secrets.get_secret("proxmoxApiToken")
        provider = proxmoxve.Provider(
            f"{name}-proxmox",
            endpoint=config.proxmox.endpoint,
            insecure=config.proxmox.insecure,
            api_token=operator_token,
            # Snippet uploads (cloud-init user data) go over SSH to the node.
            ssh=ProviderSshArgs(username=config.proxmox.ssh.username, agent=config.proxmox.ssh.agent),
            opts=pulumi.ResourceOptions(parent=self),
        )
        child = pulumi.ResourceOptions(parent=self, providers=[provider])
        # Read from the cluster (provider data source `getVersion`) and checked against the config.
        self.pve_version = proxmoxve.get_version_output(
            opts=pulumi.InvokeOutputOptions(provider=provider)
        ).version.apply(lambda v: check_pve_version(configured_major=config.proxmox.pve_major, version=v))
        seed = secrets.get_secret(SEED_KEY)
        if seed is None:
            pulumi.log.warn(
                f"{NAMESPACE}:{SEED_KEY} is not set: no bootstrap API token (apiToken output). Set one with "
                f'pulumi config set --secret {NAMESPACE}:{SEED_KEY} "$(openssl rand -base64 33)"'
            )
        main_token = bootstrap_token(seed, config.hub_vm.name)
        # The token is a secret output; the VM receives only the SHA-256 of its secret part.
        self.api_token = (
            None if main_token is None else pulumi.Output.secret(main_token.apply(lambda t: t.token))
        )
        production = config.is_production

        # The dynamic resources (SDN objects, the experiments' clones) call the API as the operator,
        # with the same endpoint and token as the provider.
        access = operator_props(
            endpoint=config.proxmox.endpoint, insecure=config.proxmox.insecure, api_token=operator_token
        )
        self.network = HubNetwork(
            f"{name}-network",
            config=config.network,
            nodes=config.zone_nodes,
            isolated=isolated,
            access=access,
            opts=child,
        )
        self.access = HubAccess(
            f"{name}-access",
            role_prefix=config.pool.id,
            pve_major=config.proxmox.pve_major,
            datastore=config.datastore,
            protect=production,
            opts=child,
        )
        # The main Hub attaches task VMs to the task vnets only: not management, not isolated hubs.
        self.grant = self.access.grant(
            f"{name}-hub-access",
            pool_id=config.pool.id,
            comment=config.pool.comment,
            user_id=config.user_id,
            vnet_paths=[self.network.vnet_path(v) for v in self.network.task_vnets],
            parent=self,
            # The main Hub's user was HubAccess's child before each hub had its own user: the alias
            # keeps a deployed stack's user (and so its token) instead of replacing it.
            user_aliases=[pulumi.Alias(name=f"{name}-access-user", parent=self.access)],
        )
        hub = config.hub_vm
        mgmt = config.network.management
        spec = HubVmSpec(
            name=hub.name,
            vm_id=hub.vm_id,
            cores=hub.cores,
            memory_mib=hub.memory_mib,
            disk_gb=hub.disk_gb,
            hub_type=config.hub_type,
            hub_label=config.hub_label,
            checkpoints=config.checkpoints,
            params={},
            tags=[config.hub_type],
            ipv4_address=hub.ipv4_address,
            gateway=mgmt.gateway if hub.ipv4_address != "dhcp" else None,
            api_token_sha256=None if main_token is None else main_token.apply(lambda t: t.sha256),
            pool=config.pool.id,
            task_networks=tuple(self.network.task_vnets),
        )
        self.hub = HubVm(
            f"{name}-hub",
            spec=spec,
            config=config,
            pool_id=self.grant.pool_id,
            token=self.grant.token,
            bridge=mgmt.vnet,
            deploy_files=deploy_files,
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.network.ready),
        )
        self.network.vm_firewall(
            f"{name}-hub",
            vm=self.hub.vm,
            vm_id=hub.vm_id,
            node=config.node,
            group=self.network.hub_group,
            outbound="ACCEPT",
            parent=self,
            address=None if config.hub_vm.ipv4_address == "dhcp" else config.hub_vm.ipv4_address,
        )
        # The sentinel (issue 10): its own token on the Hub VM only, and optionally a VM to run in.
        self.sentinel = (
            SentinelAccess(f"{name}-sentinel", config=config, protect=production, opts=child)
            if config.sentinel.enabled
            else None
        )
        if self.sentinel is not None and config.sentinel.vm is not None:
            SentinelVm(
                f"{name}-sentinel-host",
                config=config,
                vm=config.sentinel.vm,
                token=self.sentinel.token,
                network=self.network,
                opts=child,
            )
        self.experiments = {
            e.name: ExperimentalHub(
                f"{name}-exp-{e.name}",
                experiment=e,
                config=config,
                access=self.access,
                network=self.network,
                api_token=operator_token,
                operator=access,
                opts=pulumi.ResourceOptions(parent=self, depends_on=[self.hub]),
            )
            for e in config.experiments
        }
        self.domain_hubs = {
            d.name: DomainSpecificHub(
                f"{name}-{d.type}-{d.name}",
                hub=d,
                config=config,
                access=self.access,
                network=self.network,
                deploy_files=deploy_files,
                api_token=bootstrap_token(seed, f"{config.hub_vm.name}-{d.name}"),
                opts=pulumi.ResourceOptions(parent=self, depends_on=self.network.ready),
            )
            for d in config.domain_hubs
        }
        self.register_outputs(
            {
                "hub_vm_id": self.hub.vm_id,
                "pool_id": self.grant.pool_id,
                "token_id": self.grant.token_id,
            }
        )
