"""The Hub's Proxmox privileges: the single list, with the reason for each.

This module is the source of truth for what the Hub may do on Proxmox VE. `hubinfra.access` builds
the roles from it, and the runtime's tests can import it to check that every API call the Hub makes
is covered. It must not import pulumi: the runtime (inside the Hub VM) has no infra extra.

Privileges are grouped by the ACL path they are granted on, so that no privilege is granted wider
than it needs: VM and datastore work on the Hub's pool (`/pool/<id>`, inherited by its members),
network attachment on each vnet (`/sdn/zones/<zone>/<vnet>`). Nothing is granted on `/`, and nothing
on `/nodes/<node>`: `Sys.Audit` there lists every user's tasks on the node and reads their logs
(pve-manager PVE/API2/Tasks.pm node_tasks: "all task the user has 'Sys.Audit' permissions on
/nodes/<node>"), i.e. every tenant's activity, while a token can always list and read its OWN tasks
(same file, read_task_log/read_task_status: Sys.Audit is needed only "if they aren't the owner of the
task"). The Hub only waits for tasks it started, so it needs no node privilege. `Scope.NODE` stays
as a name with no privileges, so a grant on a node path is an empty role and code that iterates
scopes keeps working.

The list is what the Hub's Proxmox operations need: `tests/runtime/test_least_privilege.py` shows
the runtime works with it (sufficiency); `tests/runtime/test_privilege_necessity.py` shows, against
fakepve, that each privilege removed alone makes its named operation fail with 403 (necessity),
except two that are REDUNDANT next to another granted privilege (PVE's check accepts either:
`VM.Snapshot.Rollback` beside `VM.Snapshot`, `Datastore.Audit` beside `Datastore.AllocateSpace`) and
three fakepve cannot show (`VM.Config.Cloudinit`, `SDN.Use`, `SDN.Audit`: it does not model those
checks). Note that the runtime itself calls today only the snapshot, status, cluster-resources and
task endpoints; the VM clone/config/power privileges serve the operations of `hubcore.proxmox`
(task VMs) that its callers use.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Scope(StrEnum):
    """Where a privilege is granted. Each scope becomes one role and one ACL path."""

    POOL = "pool"
    SDN_ZONE = "sdn-zone"
    NODE = "node"
    # One VM's own path, `/vms/<vmid>`: the sentinel's grant on the Hub VM (SENTINEL_PRIVILEGES). The
    # Hub's own list has nothing here, so HubAccess declares no role for it.
    HUB_VM = "hub-vm"


@dataclass(frozen=True, slots=True)
class Privilege:
    name: str
    scope: Scope
    reason: str


HUB_PRIVILEGES: tuple[Privilege, ...] = (
    # -- VM lifecycle, on the pool ------------------------------------------------------------
    Privilege("VM.Allocate", Scope.POOL, "create and remove task VMs and experiment clones in the pool"),
    Privilege("VM.Audit", Scope.POOL, "read VM config, status and snapshot lists"),
    Privilege(
        "VM.Clone",
        Scope.POOL,
        "clone the task template (in the pool) into task VMs; PVE also checks SDN.Use on every bridge "
        "of the SOURCE's config (qemu-server src/PVE/API2/Qemu.pm clone_vm: check_bridge_access($oldconf)), "
        "so the template's NICs must sit on a task vnet. Experimental hubs are cloned by Pulumi with the "
        "operator's credential, never by a Hub token (the Hub's NIC is on management, where no token has "
        "SDN.Use)",
    ),
    Privilege("VM.Config.CDROM", Scope.POOL, "attach or eject the cloud-init/ISO drive of task VMs"),
    Privilege("VM.Config.CPU", Scope.POOL, "size task VMs"),
    Privilege("VM.Config.Cloudinit", Scope.POOL, "give task VMs and clones their own cloud-init settings"),
    Privilege("VM.Config.Disk", Scope.POOL, "add and resize task VM disks"),
    Privilege("VM.Config.HWType", Scope.POOL, "set machine/SCSI controller type on task VMs"),
    Privilege("VM.Config.Memory", Scope.POOL, "size task VMs"),
    Privilege("VM.Config.Network", Scope.POOL, "attach task VMs to task vnets and set their firewall flag"),
    Privilege("VM.Config.Options", Scope.POOL, "name, tag and describe VMs (checkpoint metadata)"),
    Privilege("VM.PowerMgmt", Scope.POOL, "start, stop and reboot VMs (recovery ladder, task VMs)"),
    Privilege("VM.Snapshot", Scope.POOL, "create and delete checkpoint snapshots (also allows rollback)"),
    Privilege(
        "VM.Snapshot.Rollback",
        Scope.POOL,
        "roll back to a checkpoint; listed explicitly so intent survives if VM.Snapshot is dropped",
    ),
    # -- storage, on the pool (the datastore is a pool member) ------------------------------------
    Privilege("Datastore.AllocateSpace", Scope.POOL, "allocate disks for clones, snapshots and task VMs"),
    Privilege("Datastore.Audit", Scope.POOL, "check free space before cloning or snapshotting"),
    Privilege("Pool.Audit", Scope.POOL, "list the pool's members (the Hub's inventory)"),
    # -- network, on the SDN zone ---------------------------------------------------------------
    Privilege(
        "SDN.Use",
        Scope.SDN_ZONE,
        "attach VMs to the hub's own task vnets, and clone the task template whose NIC is on one "
        "(granted per vnet, never on the management vnet)",
    ),
    Privilege("SDN.Audit", Scope.SDN_ZONE, "read the vnets and subnets it attaches VMs to"),
)

# The sentinel's (issue 10): the recovery ladder run from OUTSIDE the Hub VM, with its own user and
# privilege-separated token, granted on `/vms/<hub vmid>` only (`Scope.HUB_VM`), never on `/` or on
# the pool, so it cannot touch a task VM or another hub. Every name is one the Hub itself holds
# (tests/hubinfra/test_sentinel.py checks it): the sentinel acts on the Hub VM as the Hub may, no
# wider. The permission each call checks, from qemu-server src/PVE/API2/Qemu.pm (path
# `/vms/{vmid}`; the names are pve-access-control src/PVE/AccessControl.pm's privilege list):
SENTINEL_PRIVILEGES: tuple[Privilege, ...] = (
    Privilege(
        "VM.Audit",
        Scope.HUB_VM,
        "the Hub VM's status (vm_status GET status/current: 'hung' = running but not answering), its "
        "config and description (vm_config GET config: the lease and journal it keeps there), its "
        "snapshots and their descriptions (snapshot_list GET snapshot: blessed, quarantined)",
    ),
    Privilege(
        "VM.Snapshot",
        Scope.HUB_VM,
        "the pre-recovery snapshot of the broken state (snapshot POST snapshot), and marking a "
        "checkpoint quarantined in its description (update_snapshot_config PUT snapshot/{name}/config)",
    ),
    Privilege(
        "VM.Snapshot.Rollback",
        Scope.HUB_VM,
        "the ladder's rollbacks (rollback POST snapshot/{name}/rollback accepts VM.Snapshot OR this); "
        "listed so the intent survives if VM.Snapshot is dropped",
    ),
    Privilege(
        "VM.PowerMgmt",
        Scope.HUB_VM,
        "the ladder's restart and the start or resume after a rollback (vm_shutdown, vm_stop, vm_start, "
        "vm_resume POST status/*)",
    ),
    Privilege(
        "VM.Config.Options",
        Scope.HUB_VM,
        "write the lease and the recovery journal into the Hub VM's description (update_vm "
        "PUT/POST config with `description`: a $generaloptions key, checked as VM.Config.Options)",
    ),
)

# The guest-agent read privilege was renamed in PVE 9; on PVE 8 the same capability is VM.Monitor.
GUEST_AGENT_PRIVILEGE: dict[int, Privilege] = {
    9: Privilege("VM.GuestAgent.Audit", Scope.POOL, "read guest agent info (addresses, fs-freeze state)"),
    8: Privilege("VM.Monitor", Scope.POOL, "read guest agent info (PVE 8 spelling of VM.GuestAgent.Audit)"),
}

# Never granted to the Hub, whatever a later change argues. Each would let a compromised Hub widen
# its own rights, reach other tenants' data, or take the host down.
FORBIDDEN_PRIVILEGES: dict[str, str] = {
    "Permissions.Modify": "would let the Hub grant itself anything",
    "User.Modify": "would let the Hub create users or tokens outside its ACLs",
    "Group.Allocate": "group membership is a permissions change",
    "Realm.Allocate": "authentication realms are cluster security configuration",
    "Realm.AllocateUser": "assigning users to realms is a permissions change",
    "Sys.Modify": "node network, time and DNS settings are host administration",
    "Sys.Console": "a node shell is root on the host",
    "Sys.PowerMgmt": "rebooting nodes takes every tenant down",
    "Sys.Syslog": "node logs contain other tenants' data",
    "Sys.Incoming": "cross-cluster migration intake",
    "Sys.Audit": "on /nodes/<node> it lists and reads every user's tasks (other tenants' activity); "
    "the Hub reads only its own tasks, which needs no privilege",
    "Datastore.Allocate": "creates and edits storage definitions",
    "Datastore.AllocateTemplate": "uploads ISOs and templates shared by every tenant",
    "VM.Backup": "backup storage holds every tenant's data",
    "VM.Console": "interactive console of any pool VM; the Hub uses the guest agent and the API",
    "VM.Migrate": "moving VMs between nodes is an operator decision",
    "Pool.Allocate": "pools are declared by Pulumi, not created by the Hub",
    "SDN.Allocate": "networks are declared by Pulumi, not created by the Hub",
    "Mapping.Modify": "hardware mappings (PCI/USB passthrough) reach the host",
}


def privileges_for(scope: Scope, *, pve_major: int = 9) -> list[str]:
    """The privilege names granted on `scope`, sorted, for the given PVE major version."""
    names = [p.name for p in HUB_PRIVILEGES if p.scope is scope]
    agent = GUEST_AGENT_PRIVILEGE[pve_major]
    if agent.scope is scope:
        names.append(agent.name)
    return sorted(names)


def all_privileges(*, pve_major: int = 9) -> list[str]:
    """Every privilege the Hub holds anywhere, sorted."""
    return sorted({name for scope in Scope for name in privileges_for(scope, pve_major=pve_major)})


def sentinel_privileges() -> list[str]:
    """The sentinel's privilege names on the Hub VM, sorted (the same for PVE 8 and 9)."""
    return sorted(p.name for p in SENTINEL_PRIVILEGES)


def _check_disjoint() -> None:
    for pve_major in GUEST_AGENT_PRIVILEGE:
        granted = set(all_privileges(pve_major=pve_major)) | set(sentinel_privileges())
        overlap = granted & set(FORBIDDEN_PRIVILEGES)
        if overlap:  # pragma: no cover - a programming error caught at import time
            raise RuntimeError(f"privileges both granted and forbidden: {sorted(overlap)}")


_check_disjoint()
