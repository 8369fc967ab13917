"""Quota check: refuse the whole program before any resource is declared.

Proxmox pools carry no quotas, so the limit is enforced where the VMs are declared: the sum over the
Hub VM, the domain hubs and the experimental hubs must fit `hub:quotas`. Checking before the first
resource means a refused plan leaves nothing half-created.

Per Hub (issue 11): each Hub's settings file carries the most its pool may hold in task machines
(`pool_max_cores`, `pool_max_memory_mib`, `pool_max_disk_gb`, `pool_max_machines`), where the runtime
refuses a machine that would exceed it before any Proxmox call: `hub:quotas` less the Hub's own VM,
which lives in the same pool (`pool_limits`). It depends on the quota and that hub only, never on the
other hubs of the stack: adding an experiment or a domain hub must not change, and so re-upload or
reconfigure, every existing hub's settings. Each pool is bounded on its own; the stack quota bounds
what Pulumi declares.
"""

from __future__ import annotations

from dataclasses import dataclass

from hubinfra.config import ConfigError, StackConfig


@dataclass(frozen=True, slots=True)
class Demand:
    name: str
    cores: int
    memory_mib: int
    disk_gb: int


def demands(config: StackConfig) -> list[Demand]:
    """Every VM this stack declares, with the resources it takes."""
    hub = config.hub_vm
    out = [Demand(hub.name, hub.cores, hub.memory_mib, hub.disk_gb)]
    out += [Demand(d.name, d.cores, d.memory_mib, d.disk_gb) for d in config.domain_hubs]
    # A full clone takes the source's disk; its size follows the Hub VM's.
    out += [
        Demand(e.name, e.cores or hub.cores, e.memory_mib or hub.memory_mib, hub.disk_gb)
        for e in config.experiments
    ]
    if (sentinel := config.sentinel.vm) is not None:
        out.append(Demand(config.sentinel_vm_name, sentinel.cores, sentinel.memory_mib, sentinel.disk_gb))
    return out


def check_quotas(config: StackConfig) -> None:
    """Raise ConfigError naming the first limit the declared VMs exceed."""
    wanted = demands(config)
    quotas = config.quotas
    totals = {
        "vms": (len(wanted), quotas.vms, ""),
        "cores": (sum(d.cores for d in wanted), quotas.cores, ""),
        "memoryMib": (sum(d.memory_mib for d in wanted), quotas.memory_mib, " MiB"),
        "diskGb": (sum(d.disk_gb for d in wanted), quotas.disk_gb, " GB"),
    }
    for key, (total, limit, unit) in totals.items():
        if total > limit:
            raise ConfigError(
                f"hub:quotas.{key}: the {len(wanted)} declared VMs need {total}{unit}, "
                f"the limit is {limit}{unit}; raise the quota or declare fewer hubs"
            )


@dataclass(frozen=True, slots=True)
class PoolLimits:
    """The most a Hub's pool may hold in task machines (the runtime's HUB_POOL_MAX_*)."""

    cores: int
    memory_mib: int
    disk_gb: int
    machines: int


def pool_limits(config: StackConfig, own: Demand) -> PoolLimits:
    """`hub:quotas` less the hub's own VM (`own`), for the task machines of its pool (never negative)."""
    quotas = config.quotas
    return PoolLimits(
        cores=max(0, quotas.cores - own.cores),
        memory_mib=max(0, quotas.memory_mib - own.memory_mib),
        disk_gb=max(0, quotas.disk_gb - own.disk_gb),
        machines=max(0, quotas.vms - 1),
    )
