"""PVE tasks: what a UPID says, when a task succeeded, and which typed error a failed one becomes.

Every write that PVE runs as a worker (snapshot, rollback, clone, config, power actions, destroy)
answers with a UPID; the client waits for it and applies one rule, PVE's own: a task succeeded if its
exit status is ``OK`` or starts with ``WARNINGS:`` (pve-common ``PVE::Tools::upid_status_is_error``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from hubcore.proxmox.errors import (
    ProxmoxBadRequest,
    ProxmoxConflict,
    ProxmoxError,
    ProxmoxLockedError,
    ProxmoxNotFound,
    ProxmoxQuorumError,
    ProxmoxTaskFailed,
)

# PVE's wording for a VM config lock held by someone else, in an HTTP answer or a task's exit status.
LOCKED = re.compile(r"can't lock file .* got timeout|VM is locked \(|is locked \(\w+\)")
QUORUM = re.compile(r"no quorum|cluster not ready")
MISSING = re.compile(r"does not exist|no such (vm|snapshot|task)|not found", re.IGNORECASE)
# A VM in the wrong state for the request (qemu-server src/PVE/API2/Qemu.pm: "VM $vmid not running",
# "VM $vmid is running - destroy failed", "VM is paused - cannot shutdown"; src/PVE/QemuServer.pm
# vm_start: "VM $vmid already running"; clone: "unable to create VM $newid: config file already exists").
CONFLICT = re.compile(
    r"VM \d+ (?:not running|already running|is running)|config file already exists|already exists on node"
    r"|is paused - cannot"
    # A config write whose ``digest`` no longer matches (qemu-server src/PVE/API2/Qemu.pm
    # update_vm_api: "checksum mismatch (file change by other user?)"): someone else wrote first.
    r"|checksum mismatch"
)
# A task that found no config file: the VM is gone (a destroy that raced another one).
_CONFIG_MISSING = re.compile(r"Configuration file '[^']+' does not exist")
_SNAPSHOT_MISSING = re.compile(r"snapshot '[^']+' does not exist")


@dataclass(frozen=True, slots=True)
class TaskResult:
    upid: str
    exitstatus: str


def task_succeeded(exitstatus: str) -> bool:
    """PVE's rule: ``OK``, or ``WARNINGS: N`` (the task did its work and logged warnings)."""
    return exitstatus == "OK" or exitstatus.startswith("WARNINGS:")


def upid_node(upid: str) -> str:
    """The node a task runs on, from its UPID (``UPID:node:pid:pstart:starttime:type:id:user:``)."""
    parts = upid.split(":")
    if len(parts) < 9 or parts[0] != "UPID":
        raise ProxmoxBadRequest(f"not a task id: {upid!r}")
    return parts[1]


def task_error(upid: str, exitstatus: str) -> ProxmoxError:
    """The typed error for a task that stopped with ``exitstatus`` (not a success)."""
    if _SNAPSHOT_MISSING.search(exitstatus) or _CONFIG_MISSING.search(exitstatus):
        return ProxmoxNotFound(f"Proxmox task failed: {exitstatus}")
    if LOCKED.search(exitstatus):
        return ProxmoxLockedError(f"the VM is locked by another task: {exitstatus}")
    if QUORUM.search(exitstatus):
        return ProxmoxQuorumError(f"the Proxmox cluster has lost quorum: {exitstatus}")
    if CONFLICT.search(exitstatus):
        return ProxmoxConflict(f"Proxmox task refused: {exitstatus}")
    return ProxmoxTaskFailed(f"Proxmox task failed: {exitstatus}", upid=upid, exitstatus=exitstatus)
