"""The stack config: one typed model for everything under the `hub:` namespace.

Keys are camelCase, as Pulumi's own providers spell theirs (`hub:hubVm`, `hub:templateVmId`).
Unknown keys are rejected, and any error becomes ONE message naming the key the operator must fix
(`hub:hubVm.cores: must be >= 4`). This module does not import pulumi: `hubctl promote` validates
a promoted config with it inside the Hub VM, where the infra extra is not installed.

Regenerate the editor schema with `python -m hubinfra.config` (a test checks it is up to date).
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from hubcore.contract import (
    SDN_ID_PATTERN,
    Environment,
    HubType,
    check_hub_type,
    validate_schedule,
    validate_snapshot_name,
)

NAMESPACE = "hub"
SCHEMA_PATH = Path(__file__).with_name("stack-config.schema.json")

# Design minimums for the Hub VM (PostgreSQL + Redis + nginx + orchestrator, and room for snapshots).
MIN_CORES = 4
MIN_MEMORY_MIB = 8192
MIN_DISK_GB = 50

# Keys that are read as Pulumi secrets (`pulumi config set --secret ...`) and never enter the model.
# `apiTokenSeed` derives the bootstrap API tokens (hubinfra/api_token.py).
SECRET_KEYS: frozenset[str] = frozenset({"proxmoxApiToken", "apiTokenSeed"})

_HUB_NAME = re.compile(r"[a-z][a-z0-9-]{0,20}[a-z0-9]|[a-z]")

# The rules for values that reach the runtime's settings (schedule, snapshot names, environment and
# hub type) live in hubcore.contract, shared with the runtime; a stack itself is never experimental.
StackEnvironment = Literal[Environment.DEVELOPMENT, Environment.PRODUCTION]
DomainHubType = Literal[HubType.CLIENT, HubType.PROJECT, HubType.GEOGRAPHIC]
ParamValue = str | int | float | bool
VmId = Annotated[int, Field(ge=100, le=999_999_999)]
VlanTag = Annotated[int, Field(ge=1, le=4094)]
SdnId = Annotated[str, Field(pattern=SDN_ID_PATTERN, description="PVE SDN id: lowercase, 2-8 chars")]
HubName = Annotated[str, Field(pattern=f"^(?:{_HUB_NAME.pattern})$")]


class ConfigError(ValueError):
    """A stack config problem, already phrased as `hub:<key>: <what is wrong>`."""


class _Model(BaseModel):
    model_config = ConfigDict(
        extra="forbid", alias_generator=to_camel, populate_by_name=True, frozen=True, validate_default=True
    )


class SshAccess(_Model):
    """How the provider reaches the node over SSH to upload cloud-init snippets."""

    username: str = "root"
    agent: bool = True


class ProxmoxEndpoint(_Model):
    endpoint: Annotated[str, Field(pattern=r"^https://[^/\s]+(:\d+)?/?$")]
    insecure: bool = False
    ca_bundle_pem: str | None = Field(
        default=None, description="PEM written into the Hub VM to verify the API (proxmox_ca_bundle)"
    )
    pve_major: Literal[8, 9] = 9
    ssh: SshAccess = SshAccess()


class Sizing(_Model):
    cores: Annotated[int, Field(ge=MIN_CORES)] = MIN_CORES
    memory_mib: Annotated[int, Field(ge=MIN_MEMORY_MIB)] = MIN_MEMORY_MIB
    disk_gb: Annotated[int, Field(ge=MIN_DISK_GB)] = MIN_DISK_GB


class HubVmConfig(Sizing):
    vm_id: VmId
    name: HubName
    ipv4_address: str = Field(default="dhcp", description="'dhcp' or a CIDR address on the management net")
    ssh_keys: list[str] = Field(default_factory=lambda: list[str]())

    @field_validator("ipv4_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value != "dhcp":
            ipaddress.ip_interface(value)
        return value


class Vnet(_Model):
    vnet: SdnId
    vlan_tag: VlanTag
    cidr: str
    gateway: str | None = None

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return str(ipaddress.ip_network(value))

    @model_validator(mode="after")
    def _gateway_inside(self) -> Self:
        if self.gateway is not None and ipaddress.ip_address(self.gateway) not in ipaddress.ip_network(
            self.cidr
        ):
            raise ValueError("gateway must lie inside cidr")
        return self


class EgressEndpoint(_Model):
    """One destination task VMs may reach; everything else is dropped."""

    cidr: str
    proto: Literal["tcp", "udp"] = "tcp"
    ports: str = Field(default="443", pattern=r"^\d+([:,]\d+)*$")
    comment: str = ""

    @field_validator("cidr")
    @classmethod
    def _cidr(cls, value: str) -> str:
        return str(ipaddress.ip_network(value))


def _ipv4_network(value: str) -> str:
    """An IPv4 address or network (Proxmox firewall rules match addresses, not hostnames)."""
    network = ipaddress.ip_network(value)
    if network.version != 4:
        raise ValueError(f"{value} is not an IPv4 address or network")
    return str(network)


# The PVE nodes' API addresses: experimental hubs checkpoint their own VM through this API.
ApiAddress = Annotated[str, AfterValidator(_ipv4_network)]


class VlanRange(_Model):
    start: VlanTag
    end: VlanTag

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.end < self.start:
            raise ValueError("end must be >= start")
        return self


class NetworkConfig(_Model):
    zone: SdnId
    bridge: str = "vmbr0"
    management: Vnet
    tasks: Annotated[list[Vnet], Field(min_length=1)]
    isolated_vlans: VlanRange = Field(description="VLAN tags for experiment and domain hub vnets")
    isolated_prefix: str = Field(
        default="10.200.0.0/16", description="carved into a /24 per experiment or domain hub"
    )
    allowed_egress: list[EgressEndpoint] = Field(default_factory=lambda: list[EgressEndpoint]())
    proxmox_api: list[ApiAddress] = Field(
        default_factory=lambda: list[str](),
        description="IPv4 addresses/CIDRs of the PVE nodes' API (tcp 8006) that experimental hubs reach "
        "from their isolated networks; required when hub:experiments is not empty",
    )
    manage_cluster_firewall: bool = Field(
        default=False, description="enable the cluster firewall (a cluster-wide singleton: one stack only)"
    )
    operator_access: list[ApiAddress] = Field(
        default_factory=lambda: list[str](),
        description="IPv4 addresses/CIDRs outside management that keep the hosts' API and SSH (the "
        "`management` ipset) when manageClusterFirewall sets input DROP, e.g. the machine running pulumi up",
    )

    @field_validator("isolated_prefix")
    @classmethod
    def _isolated_prefix(cls, value: str) -> str:
        network = ipaddress.ip_network(value)
        if network.version != 4 or network.prefixlen > 24:
            raise ValueError("must be an IPv4 network of /24 or larger (one /24 per isolated hub)")
        return str(network)

    @model_validator(mode="after")
    def _disjoint(self) -> Self:
        named = [("network.management", self.management)]
        named += [(f"network.tasks[{i}]", t) for i, t in enumerate(self.tasks)]
        seen_ids: dict[str, str] = {}
        seen_tags: dict[int, str] = {}
        for where, net in named:
            if net.vnet in seen_ids:
                raise _KeyError(f"{where}.vnet", f"'{net.vnet}' is already used by {seen_ids[net.vnet]}")
            seen_ids[net.vnet] = where
            if net.vlan_tag in seen_tags:
                raise _KeyError(
                    f"{where}.vlanTag", f"{net.vlan_tag} is already used by {seen_tags[net.vlan_tag]}"
                )
            seen_tags[net.vlan_tag] = where
            if self.isolated_vlans.start <= net.vlan_tag <= self.isolated_vlans.end:
                raise _KeyError(f"{where}.vlanTag", "lies inside network.isolatedVlans")
        cidrs = [(f"{where}.cidr", ipaddress.ip_network(net.cidr)) for where, net in named]
        cidrs.append(("network.isolatedPrefix", ipaddress.ip_network(self.isolated_prefix)))
        for i, (where, a) in enumerate(cidrs):
            for other, b in cidrs[:i]:
                if a.overlaps(b):
                    raise _KeyError(where, f"{a} overlaps {other} ({b})")
        # Egress is for outside endpoints: one covering the Hub's own networks would read as if task
        # VMs could reach management (the firewall drops that first anyway).
        for i, endpoint in enumerate(self.allowed_egress):
            dest = ipaddress.ip_network(endpoint.cidr)
            for other, b in cidrs:
                if dest.overlaps(b):
                    raise _KeyError(f"network.allowedEgress[{i}].cidr", f"{dest} overlaps {other} ({b})")
        # The API addresses get an ACCEPT from experimental hubs (and the hosts accept those hubs):
        # they must never be a task network, and inside management only single node addresses, so
        # the hole into management is tcp/8006 on the named nodes, never the whole network.
        mgmt = ipaddress.ip_network(self.management.cidr)
        for i, value in enumerate(self.proxmox_api):
            api = ipaddress.ip_network(value)
            for other, b in cidrs:
                if b == mgmt:
                    if api.overlaps(mgmt) and api.num_addresses > 1:
                        raise _KeyError(
                            f"network.proxmoxApi[{i}]",
                            f"{api} overlaps {other} ({b}): inside management list each node's address (/32)",
                        )
                elif api.overlaps(b):
                    raise _KeyError(f"network.proxmoxApi[{i}]", f"{api} overlaps {other} ({b})")
        return self


class PoolConfig(_Model):
    id: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,30}$")]
    comment: str = "Hub resources (managed by Pulumi)"


class Quotas(_Model):
    """Limits on everything this stack declares (the Hub VM, domain hubs, experiments)."""

    cores: Annotated[int, Field(ge=1)]
    memory_mib: Annotated[int, Field(ge=1)]
    disk_gb: Annotated[int, Field(ge=1)]
    vms: Annotated[int, Field(ge=1)]


class CheckpointPolicy(_Model):
    schedule: str = "manual"
    keep_last: Annotated[int, Field(ge=0)] = 0
    keep_hourly: Annotated[int, Field(ge=0)] = 0
    keep_daily: Annotated[int, Field(ge=0)] = 0
    keep_weekly: Annotated[int, Field(ge=0)] = 0
    keep_monthly: Annotated[int, Field(ge=0)] = 0

    @field_validator("schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return validate_schedule(value)


class RuntimeConfig(_Model):
    """What the Hub VM installs and the knobs the runtime reads as `params`."""

    repo_url: Annotated[str, Field(pattern=r"^(https://|git@)\S+$")]
    ref: Annotated[str, Field(min_length=1)]
    params: dict[str, ParamValue] = Field(default_factory=lambda: dict[str, ParamValue]())


class Experiment(_Model):
    name: HubName
    checkpoint: str = Field(description="the Hub snapshot to clone from (hub- + 32 hex)")
    params: dict[str, ParamValue] = Field(default_factory=lambda: dict[str, ParamValue]())
    vm_id: VmId
    source_vm_id: VmId | None = Field(default=None, description="defaults to hub:hubVm.vmId")
    cores: Annotated[int, Field(ge=MIN_CORES)] | None = None
    memory_mib: Annotated[int, Field(ge=MIN_MEMORY_MIB)] | None = None
    start: bool = Field(
        default=True,
        description="start the clone once its own cloud-init (settings, token, identity) is attached",
    )

    @field_validator("checkpoint")
    @classmethod
    def _checkpoint(cls, value: str) -> str:
        return validate_snapshot_name(value)


class DomainHub(Sizing):
    name: HubName
    type: DomainHubType
    label: Annotated[str, Field(min_length=1)]
    vm_id: VmId
    params: dict[str, ParamValue] = Field(default_factory=lambda: dict[str, ParamValue]())


class SentinelVmConfig(_Model):
    """A small VM, cloned from the template, that runs `hubctl sentinel watch` (issue 10)."""

    vm_id: VmId
    name: HubName | None = Field(default=None, description="defaults to <hubVm.name>-sentinel")
    cores: Annotated[int, Field(ge=1)] = 1
    memory_mib: Annotated[int, Field(ge=512)] = 1024
    disk_gb: Annotated[int, Field(ge=8)] = 10
    ipv4_address: str = Field(default="dhcp", description="CIDR on the management vnet, or dhcp")
    hub_url: Annotated[str, Field(pattern=r"^https?://\S+$")] | None = Field(
        default=None,
        description="the Hub's base URL the sentinel probes; defaults to https://<hubVm.ipv4Address>",
    )

    @field_validator("ipv4_address")
    @classmethod
    def _address(cls, value: str) -> str:
        if value != "dhcp":
            ipaddress.IPv4Interface(value)
        return value


class SentinelConfig(_Model):
    """The sentinel's own Proxmox access on the Hub VM, and optionally a VM to run it in."""

    enabled: bool = False
    vm: SentinelVmConfig | None = None

    @model_validator(mode="after")
    def _vm_needs_enabled(self) -> Self:
        if self.vm is not None and not self.enabled:
            raise _KeyError("sentinel.enabled", "must be true when hub:sentinel.vm is set")
        return self


class StackConfig(_Model):
    environment: StackEnvironment
    proxmox: ProxmoxEndpoint
    node: Annotated[str, Field(min_length=1)]
    nodes: list[str] | None = Field(default=None, description="SDN zone nodes; defaults to [node]")
    template_vm_id: VmId
    task_template_vm_id: VmId | None = Field(
        default=None,
        description="the template task machines are cloned from (HUB_TASK_TEMPLATE_VMID); it must be in "
        "the Hub's pool with its NIC on a task vnet",
    )
    datastore: Annotated[str, Field(min_length=1)]
    snippets_datastore: str = "local"
    user_id: Annotated[str, Field(pattern=r"^[A-Za-z][A-Za-z0-9._-]*@pve$")] = "hub@pve"
    protect: bool = False
    hub_vm: HubVmConfig
    hub_type: HubType
    hub_label: Annotated[str, Field(min_length=1)]
    network: NetworkConfig
    pool: PoolConfig
    quotas: Quotas
    checkpoints: CheckpointPolicy = CheckpointPolicy()
    runtime: RuntimeConfig
    experiments: list[Experiment] = Field(default_factory=lambda: list[Experiment]())
    domain_hubs: list[DomainHub] = Field(default_factory=lambda: list[DomainHub]())
    sentinel: SentinelConfig = SentinelConfig()

    @model_validator(mode="after")
    def _environment_rules(self) -> Self:
        if self.environment is Environment.PRODUCTION:
            if not self.protect:
                raise _KeyError("protect", "must be true for production")
            if self.proxmox.insecure:
                raise _KeyError("proxmox.insecure", "refused for production")
            if self.checkpoints.schedule == "manual":
                raise _KeyError("checkpoints.schedule", "production needs a schedule, e.g. '0 0 * * *'")
            # Stricter than the runtime's pairing rule, which lets a domain hub run in production:
            # a production stack's own Hub is THE production Hub.
            if self.hub_type is not HubType.PRODUCTION:
                raise _KeyError("hubType", "must be 'production' in the production environment")
        # The rule the runtime applies to the settings file this stack's Hub VM gets.
        try:
            check_hub_type(environment=self.environment, hub_type=self.hub_type)
        except ValueError as exc:
            raise _KeyError("hubType", str(exc)) from None
        return self

    @model_validator(mode="after")
    def _unique_hubs(self) -> Self:
        names: dict[str, str] = {}
        vm_ids: dict[int, str] = {self.hub_vm.vm_id: "hubVm.vmId", self.template_vm_id: "templateVmId"}
        if self.task_template_vm_id is not None:
            if self.task_template_vm_id == self.hub_vm.vm_id:
                raise _KeyError("taskTemplateVmId", f"{self.task_template_vm_id} is the Hub VM (hubVm.vmId)")
            vm_ids.setdefault(self.task_template_vm_id, "taskTemplateVmId")
        items: list[tuple[str, Experiment | DomainHub]] = [
            *((f"experiments[{i}]", e) for i, e in enumerate(self.experiments)),
            *((f"domainHubs[{i}]", d) for i, d in enumerate(self.domain_hubs)),
        ]
        for where, item in items:
            if item.name in names:
                raise _KeyError(f"{where}.name", f"'{item.name}' is already used by {names[item.name]}")
            names[item.name] = where
            if item.vm_id in vm_ids:
                raise _KeyError(f"{where}.vmId", f"{item.vm_id} is already used by {vm_ids[item.vm_id]}")
            vm_ids[item.vm_id] = f"{where}.vmId"
        sentinel_vm = self.sentinel.vm
        if sentinel_vm is not None and sentinel_vm.vm_id in vm_ids:
            raise _KeyError(
                "sentinel.vm.vmId", f"{sentinel_vm.vm_id} is already used by {vm_ids[sentinel_vm.vm_id]}"
            )
        return self

    @model_validator(mode="after")
    def _sentinel_knows_the_hub(self) -> Self:
        vm = self.sentinel.vm
        if vm is not None and vm.hub_url is None and self.hub_vm.ipv4_address == "dhcp":
            raise _KeyError(
                "sentinel.vm.hubUrl",
                "required when hub:hubVm.ipv4Address is dhcp: the URL the sentinel probes (https://...)",
            )
        return self

    @property
    def sentinel_vm_name(self) -> str:
        vm = self.sentinel.vm
        return (vm.name if vm is not None and vm.name else None) or f"{self.hub_vm.name}-sentinel"

    @model_validator(mode="after")
    def _experiments_reach_the_api(self) -> Self:
        # An experimental hub is a Hub: it checkpoints its own VM through the Proxmox API. Without
        # the API's addresses its firewall cannot let it through, and it would run inert.
        if self.experiments and not self.network.proxmox_api:
            raise _KeyError(
                "network.proxmoxApi",
                "required when hub:experiments is not empty: list the PVE nodes' API addresses "
                "(IPv4) so experimental hubs can checkpoint themselves",
            )
        return self

    @property
    def zone_nodes(self) -> list[str]:
        return self.nodes or [self.node]

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION


class _KeyError(ValueError):
    """Raised inside model validators to name a key other than the validator's location."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


def _format_location(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


def _format_error(error: Mapping[str, Any]) -> str:
    loc = _format_location(tuple(error["loc"]))
    ctx: Mapping[str, Any] = error.get("ctx") or {}
    exc = ctx.get("error")
    if isinstance(exc, _KeyError):
        return f"{NAMESPACE}:{exc.key}: {exc.message}"
    kind = error["type"]
    messages = {
        "greater_than_equal": f"must be >= {ctx.get('ge')}",
        "less_than_equal": f"must be <= {ctx.get('le')}",
        "extra_forbidden": "unknown key",
        "missing": "required",
        "string_pattern_mismatch": f"must match {ctx.get('pattern')}",
        "too_short": f"needs at least {ctx.get('min_length')} item(s)",
    }
    message = messages.get(kind)
    if message is None:
        message = str(error["msg"]).removeprefix("Value error, ")
        if message[:1].isupper() and not message[1:2].isupper():
            message = message[0].lower() + message[1:]
    return f"{NAMESPACE}:{loc}: {message}" if loc else f"{NAMESPACE}: {message}"


def parse_stack_config(raw: Mapping[str, Any]) -> StackConfig:
    """Validate the `hub:` keys (without the namespace prefix). Raises ConfigError with one message."""
    data = {k: v for k, v in raw.items() if k not in SECRET_KEYS}
    try:
        return StackConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc.errors()[0])) from None


def decode_config_value(value: Any) -> Any:
    """Pulumi hands structured config to programs as JSON text; scalars stay strings for pydantic."""
    if isinstance(value, str) and value[:1] in ("{", "["):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def config_from_stack_file(document: Mapping[str, Any]) -> dict[str, Any]:
    """The `hub:` keys of a parsed `Pulumi.<stack>.yaml` document, without the namespace prefix."""
    config: Mapping[str, Any] = document.get("config") or {}
    prefix = f"{NAMESPACE}:"
    return {k.removeprefix(prefix): v for k, v in config.items() if k.startswith(prefix)}


def json_schema() -> dict[str, Any]:
    """The editor schema: the model's JSON schema, with keys as written in the stack file."""
    schema = StackConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "Hub stack config (keys under the `hub:` namespace, without the prefix)"
    return schema


def render_json_schema() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


def main() -> None:
    SCHEMA_PATH.write_text(render_json_schema())
    print(f"wrote {SCHEMA_PATH}")


if __name__ == "__main__":
    main()
