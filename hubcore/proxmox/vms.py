"""VMs as the Hub sees them, and the calls that read, configure, clone, power and destroy them.

Every call here takes a ``VmRef`` (the fleet code acts on many VMs; none of them is "the" VM) and is
idempotent: asking for a state the VM is already in returns None instead of starting a task, and a
POST retried after a lost answer first checks whether the first one already happened. PVE's behaviour
that a caller depends on is cited from its source (qemu-server ``src/PVE/API2/Qemu.pm``,
``src/PVE/QemuServer.pm``, ``src/PVE/QemuConfig.pm``; pve-guest-common ``src/PVE/AbstractConfig.pm``).

fakepve (the test double) differs from PVE in two places, noted where they matter: it does not resume a
VM from a snapshot's RAM state on rollback, and it refuses a shutdown of a stopped VM.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from hubcore.proxmox.errors import (
    ProxmoxBadRequest,
    ProxmoxConflict,
    ProxmoxError,
    ProxmoxLockedError,
    ProxmoxNotFound,
)
from hubcore.proxmox.tasks import TaskResult

T = TypeVar("T")

# PVE writes tags separated by ';' and accepts ',' and spaces on input (pve-common PVE::JSONSchema
# pve-tag-list).
_TAG_SPLIT = re.compile(r"[;, ]+")
# A shutdown or reboot task waits up to its own `timeout` for the guest, then (forceStop) kills it,
# which takes a few seconds more: our wait for the task gets this on top.
_POWERDOWN_GRACE = 30.0


@dataclass(frozen=True, slots=True)
class VmRef:
    """Which VM: its id and the node it lives on (PVE's API paths need both)."""

    vmid: int
    node: str


@dataclass(frozen=True, slots=True)
class VmResource:
    """One row of ``GET /cluster/resources?type=vm`` (a QEMU VM)."""

    vmid: int
    node: str
    name: str | None
    status: str
    template: bool
    pool: str | None
    tags: tuple[str, ...]
    lock: str | None
    maxcpu: int
    maxmem: int
    maxdisk: int
    cpu: float
    mem: int
    uptime: int

    @property
    def ref(self) -> VmRef:
        return VmRef(vmid=self.vmid, node=self.node)


@dataclass(frozen=True, slots=True)
class VmStatus:
    """``GET /nodes/{node}/qemu/{vmid}/status/current``.

    ``status`` is ``running`` or ``stopped``; ``qmpstatus`` tells a paused (or suspended) VM from a
    running one, which ``status`` does not.
    """

    vmid: int
    node: str
    status: str
    qmpstatus: str | None
    lock: str | None
    uptime: int
    cpu: float
    mem: int
    maxmem: int
    disk: int
    maxdisk: int
    name: str | None


def vm_resource(row: Mapping[str, Any]) -> VmResource:
    return VmResource(
        vmid=int(row["vmid"]),
        node=str(row["node"]),
        name=_str_or_none(row.get("name")),
        status=str(row.get("status") or "unknown"),
        template=bool(int(row.get("template") or 0)),
        pool=_str_or_none(row.get("pool")),
        tags=tuple(t for t in _TAG_SPLIT.split(str(row.get("tags") or "")) if t),
        lock=_str_or_none(row.get("lock")),
        maxcpu=_int(row, "maxcpu"),
        maxmem=_int(row, "maxmem"),
        maxdisk=_int(row, "maxdisk"),
        cpu=float(row.get("cpu") or 0.0),
        mem=_int(row, "mem"),
        uptime=_int(row, "uptime"),
    )


def vm_status(vm: VmRef, row: Mapping[str, Any]) -> VmStatus:
    return VmStatus(
        vmid=vm.vmid,
        node=vm.node,
        status=str(row.get("status") or "unknown"),
        qmpstatus=_str_or_none(row.get("qmpstatus")),
        lock=_str_or_none(row.get("lock")),
        uptime=_int(row, "uptime"),
        cpu=float(row.get("cpu") or 0.0),
        mem=_int(row, "mem"),
        maxmem=_int(row, "maxmem"),
        disk=_int(row, "disk"),
        maxdisk=_int(row, "maxdisk"),
        name=_str_or_none(row.get("name")),
    )


class VmOperations:
    """The VM half of ``ProxmoxClient``; it relies on the client's retry loop and task wait."""

    _api: Any
    _token_id: str

    if TYPE_CHECKING:

        def _retrying(self, call: Callable[[], T], *, only: type[ProxmoxError] | None = None) -> T: ...

        def wait_task(self, upid: str, *, timeout: float) -> TaskResult: ...

    # ------------------------------------------------------------------ reads

    def cluster_vms(self) -> list[VmResource]:
        """Every QEMU VM the token may audit, on every node, in one request (containers left out)."""
        rows: list[dict[str, Any]] = self._retrying(lambda: self._api.cluster.resources.get(type="vm"))
        return [vm_resource(row) for row in rows if row.get("type") == "qemu"]

    def vm_status(self, vm: VmRef) -> VmStatus:
        """The VM's power state, lock and usage. Raises ProxmoxNotFound if it is not on that node."""
        row: dict[str, Any] = self._retrying(lambda: self._qemu(vm).status.current.get())
        return vm_status(vm, row)

    def vm_config(self, vm: VmRef) -> dict[str, Any]:
        """The VM's current config (with ``digest``); changes pending until the next start are not in it."""
        return self._retrying(lambda: self._qemu(vm).config.get())

    def node_tasks(self, node: str, *, vmid: int | None = None, running: bool = True) -> list[dict[str, Any]]:
        """The node's tasks, newest first, for one VM if ``vmid`` is given; only unfinished ones if
        ``running`` (pve-manager ``PVE/API2/Tasks.pm`` ``source=active``). A finished task carries an
        ``endtime``; the filters are applied here too, so a server that ignores them cannot widen the
        answer. Rows are PVE's: ``upid``, ``type``, ``id`` (the vmid), ``user``, ``starttime``..."""
        params: dict[str, str | int] = {}
        if vmid is not None:
            params["vmid"] = vmid
        if running:
            params["source"] = "active"
        rows: list[dict[str, Any]] = self._retrying(lambda: self._api.nodes(node).tasks.get(**params))
        return [
            row
            for row in rows
            if (vmid is None or str(row.get("id")) == str(vmid)) and not (running and "endtime" in row)
        ]

    # ----------------------------------------------------------------- config

    def update_vm_config(self, vm: VmRef, *, timeout: float, **changes: str | int) -> None:
        """Set config keys (``delete="key1,key2"`` removes keys) and wait for the ``qmconfig`` task.

        Idempotent: setting the values a VM already has changes nothing. On a running VM PVE applies
        only hot-pluggable keys at once; the others stay pending until the next start or reboot
        (qemu-server ``src/PVE/API2/Qemu.pm`` update_vm_api).
        """
        if not changes:
            return
        self._task(vm, lambda: self._qemu(vm).config.post(**changes), timeout=timeout)

    def set_vm_config_checked(self, vm: VmRef, *, digest: str, **changes: str | int) -> None:
        """Set config keys only if the config is still the one read with ``digest`` (compare-and-set).

        The synchronous ``PUT .../config``: qemu-server ``src/PVE/API2/Qemu.pm`` update_vm_api loads the
        config under ``lock_config`` and dies "checksum mismatch (file change by other user?)" when
        the digest differs, so of two writers that read the same config exactly one succeeds; the
        other gets ProxmoxConflict (not retried: its premise is stale, it must read again).
        """
        self._retrying(lambda: self._qemu(vm).config.put(digest=digest, **changes))

    # ------------------------------------------------------------- snapshots

    def rollback(self, vm: VmRef, name: str, *, start: bool = False, timeout: float) -> TaskResult:
        """Roll the VM back to snapshot ``name`` and wait for the task.

        Afterwards the VM is running if the snapshot holds RAM state (``vmstate``) or ``start`` is
        True, and stopped otherwise. PVE stops the VM, restores the disks and config, and with a RAM
        state starts it again from that state (pve-guest-common ``src/PVE/AbstractConfig.pm``
        snapshot_rollback -> qemu-server ``src/PVE/QemuConfig.pm`` __snapshot_rollback_vm_start with
        ``statefile``); ``start=1`` starts it only if it is not running by then
        (``src/PVE/API2/Qemu.pm`` rollback: ``if ($param->{start} && !vm_running_locally($vmid))``).
        So asking ``start=1`` for a snapshot with RAM state changes nothing on PVE; it is sent anyway,
        to make the promised end state hold on any server (fakepve does not resume from RAM state) and
        to make PVE check ``VM.PowerMgmt`` up front rather than start the VM without it.

        Idempotent in outcome: repeating it leaves the VM at the snapshot again (discarding only what
        ran since). Raises ProxmoxNotFound for a snapshot that does not exist.
        """
        snapshot: dict[str, Any] = self._retrying(lambda: self._qemu(vm).snapshot(name).config.get())
        params = {"start": 1} if start or snapshot.get("vmstate") else {}
        return self._task(vm, lambda: self._qemu(vm).snapshot(name).rollback.post(**params), timeout=timeout)

    def clone(
        self,
        vm: VmRef,
        *,
        newid: int,
        name: str | None = None,
        pool: str | None = None,
        snapname: str | None = None,
        full: bool = True,
        target: str | None = None,
        storage: str | None = None,
        description: str | None = None,
        timeout: float,
    ) -> TaskResult:
        """Clone ``vm`` (or its snapshot ``snapname``) to ``newid`` and wait for the ``qmclone`` task.

        A clone from a snapshot must be full: a linked clone shares a template's base volumes, and a
        snapshot has none (qemu-server ``src/PVE/API2/Qemu.pm`` clone_vm: "Linked clone feature is not
        supported for a snapshot of ..."); it is refused here before anything is sent.

        Idempotent against a lost answer: a retried request first looks for ``newid``; if it exists,
        the clone task this token started for the source is waited for instead of asking again. An id
        taken before the first attempt raises ProxmoxConflict: whether that VM is the caller's is for
        the caller to prove (name and description), not for this layer to guess.
        """
        if snapname is not None and not full:
            raise ProxmoxBadRequest(f"a clone of snapshot {snapname!r} must be a full clone")
        params: dict[str, str | int] = {"newid": newid, "full": int(full)}
        optional = {
            "name": name,
            "pool": pool,
            "snapname": snapname,
            "target": target,
            "storage": storage,
            "description": description,
        }
        params.update({k: v for k, v in optional.items() if v is not None})
        since = int(time.time()) - 60  # PVE's clock, not ours: a minute of slack
        attempts = 0

        def post() -> str:
            nonlocal attempts
            attempts += 1
            if attempts > 1 and any(r.vmid == newid for r in self.cluster_vms()):
                upid = self._own_clone_task(vm, since=since)
                if upid is not None:
                    return upid
            return str(self._qemu(vm).clone.post(**params))

        return self._task(vm, post, timeout=timeout)

    def next_vmid(self) -> int:
        """A free VM id from ``GET /cluster/nextid`` (pve-manager ``PVE/API2/Cluster.pm`` nextid).

        Racy by nature: PVE answers the lowest id free *now* and reserves nothing, so two callers can
        be given the same id. The caller's clone then fails with "config file already exists"
        (ProxmoxConflict) for one of them, which asks again."""
        return int(self._retrying(lambda: self._api.cluster.nextid.get()))

    def resize_disk(self, vm: VmRef, *, disk: str, size_gib: int, timeout: float) -> None:
        """Grow ``disk`` to ``size_gib`` GiB (an absolute size; PVE refuses to shrink a disk:
        qemu-server ``src/PVE/API2/Qemu.pm`` resize_vm, "shrinking disks is not supported").
        Since qemu-server 8 the call is a worker and answers a UPID, which is waited for; an older
        server answers null when done."""
        answer = self._retrying(lambda: self._qemu(vm).resize.put(disk=disk, size=f"{size_gib}G"))
        if isinstance(answer, str) and answer.startswith("UPID:"):
            self.wait_task(answer, timeout=timeout)

    # ------------------------------------------------------------------ power

    def start(self, vm: VmRef, *, timeout: float) -> TaskResult | None:
        """Start the VM; None if it is already running (PVE would fail the task: qemu-server
        ``src/PVE/QemuServer.pm`` vm_start, "VM $vmid already running"). A start that loses that race
        to another one also returns None."""
        if self.vm_status(vm).status == "running":
            return None
        try:
            return self._task(vm, lambda: self._qemu(vm).status.start.post(), timeout=timeout)
        except ProxmoxConflict:
            if self.vm_status(vm).status == "running":
                return None
            raise

    def stop(self, vm: VmRef, *, timeout: float) -> TaskResult | None:
        """Stop the VM at once, as pulling the plug; None if it is already stopped. (PVE's stop of a
        stopped VM is a task that does nothing: ``_do_vm_stop`` returns when there is no pid.)"""
        if self.vm_status(vm).status == "stopped":
            return None
        return self._task(vm, lambda: self._qemu(vm).status.stop.post(), timeout=timeout)

    def shutdown(self, vm: VmRef, *, timeout: float, force_stop: bool = True) -> TaskResult | None:
        """Ask the guest to power off (ACPI), giving it ``timeout`` seconds; then, with ``force_stop``,
        stop it hard, without it the task fails ("got timeout"). None if it is already stopped.

        PVE's shutdown of a stopped VM is a no-op task; fakepve answers it with "not running": both
        end here as None, because the state is checked first (and again after a conflict).
        """
        if self.vm_status(vm).status == "stopped":
            return None
        params = {"timeout": max(1, int(timeout)), "forceStop": int(force_stop)}
        try:
            return self._task(
                vm, lambda: self._qemu(vm).status.shutdown.post(**params), timeout=timeout + _POWERDOWN_GRACE
            )
        except ProxmoxConflict:
            if self.vm_status(vm).status == "stopped":
                return None
            raise

    def reboot(self, vm: VmRef, *, timeout: float) -> TaskResult:
        """Reboot a running VM (the guest gets ``timeout`` seconds to shut down); pending config is
        applied as it comes back. A stopped VM raises ProxmoxConflict (PVE: "VM $vmid not running").

        Idempotent in outcome, not in effect: each call is a reboot, and the result (running, pending
        changes applied) is the same however often it is asked. A retry after a lost answer may reboot
        twice, which costs a reboot and nothing else.
        """
        params = {"timeout": max(1, int(timeout))}
        return self._task(
            vm, lambda: self._qemu(vm).status.reboot.post(**params), timeout=timeout + _POWERDOWN_GRACE
        )

    def resume(self, vm: VmRef, *, timeout: float) -> TaskResult | None:
        """Resume a paused (or suspended) VM; None if it is running and not paused. A stopped VM that
        was not suspended to disk raises ProxmoxConflict (PVE: "VM $vmid not running")."""
        status = self.vm_status(vm)
        if status.status == "running" and status.qmpstatus in (None, "running"):
            return None
        return self._task(vm, lambda: self._qemu(vm).status.resume.post(), timeout=timeout)

    # ---------------------------------------------------------------- destroy

    def destroy(self, vm: VmRef, *, purge: bool = True, timeout: float) -> TaskResult | None:
        """Destroy the VM and its disks; ``purge`` also removes it from backup jobs, replication, HA
        and pools. None if it is already gone. A running VM raises ProxmoxConflict (PVE refuses:
        "VM $vmid is running - destroy failed"): stopping it is the caller's decision."""
        params = {"purge": 1} if purge else {}
        try:
            return self._task(vm, lambda: self._qemu(vm).delete(**params), timeout=timeout)
        except ProxmoxNotFound:
            return None

    # --------------------------------------------------------------- plumbing

    def _qemu(self, vm: VmRef) -> Any:
        return self._api.nodes(vm.node).qemu(vm.vmid)

    def _task(self, vm: VmRef, post: Callable[[], Any], *, timeout: float) -> TaskResult:
        """Send ``post``, then wait for its task. A task that failed only because another task held
        the VM's config lock did nothing, so it is asked for again within the lock budget; transport
        faults are retried inside each request already."""

        def attempt() -> TaskResult:
            upid = str(self._retrying(post))
            return self.wait_task(upid, timeout=timeout)

        return self._retrying(attempt, only=ProxmoxLockedError)

    def _own_clone_task(self, vm: VmRef, *, since: int) -> str | None:
        """The newest ``qmclone`` task of the source VM started by this token since ``since``."""
        for row in self.node_tasks(vm.node, vmid=vm.vmid, running=False):
            if (
                row.get("type") == "qmclone"
                and row.get("user") == self._token_id
                and int(row.get("starttime") or 0) >= since
            ):
                return str(row["upid"])
        return None


def _int(row: Mapping[str, Any], key: str) -> int:
    return int(row.get(key) or 0)


def _str_or_none(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
