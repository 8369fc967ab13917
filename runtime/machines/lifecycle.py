"""The task-machine lifecycle, through the Proxmox API only: create, start, stop, snapshot, destroy.

Create is two halves. ``reserve`` takes the capacity in the database (runtime.machines.quotas) and
makes no Proxmox call, so a refusal is certain to have touched nothing. ``build`` then walks the
steps, recording each on the row (``step``) so a build repeated after a crash resumes where the last
one stopped:

1. allocate: a VM id from ``/cluster/nextid``, written to the row *before* the clone is asked for;
2. clone: the template (``HUB_TASK_TEMPLATE_VMID``; full or linked per ``HUB_MACHINE_FULL_CLONE``)
   into ``HUB_POOL``, named after the machine, its description carrying ``hub-machine-uuid: <uuid>``.
   ``/cluster/nextid`` is racy (it reserves nothing), so a clone refused with "config file already
   exists" asks for a new id and tries again. A VM already at the row's id is ours only if its
   description carries this machine's uuid: that is the half-made VM of a crashed build, and it is
   resumed instead of cloned a second time;
3. configure: cores, memory, the tags ``hub-machine;hub-project-<p>``, a NIC on one of
   ``HUB_TASK_NETWORKS``, cloud-init user and SSH keys, then the disk grown to its size;
4. start.

Every step is idempotent (setting values a VM has changes nothing; starting a running VM is a no-op;
a clone is never repeated once the VM exists). Ownership (records.py) is checked before every call
that changes or removes a VM: a VM without the Hub's tag and this machine's uuid line is never
touched, whatever the database says.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlalchemy import select

from hubcore.proxmox import (
    ProxmoxConflict,
    ProxmoxError,
    ProxmoxNotFound,
    ProxmoxTaskTimeout,
    VmRef,
    VmResource,
)
from runtime import audit, failpoints
from runtime.db import Database
from runtime.db.models import Machine
from runtime.errors import SettingsError, UsageError
from runtime.locks import VmLocks, vm_lock_name
from runtime.machines import quotas
from runtime.machines.errors import MachineError, NotOwnedError, QuotaExceeded, UnknownMachine
from runtime.machines.records import (
    MACHINE_NAME,
    MACHINE_TAG,
    CreateStep,
    MachineRecord,
    MachineStatus,
    describe,
    project_tag,
    tags_for,
    uuid_in,
)
from runtime.settings import Settings, env_name
from runtime.vms import VmLocator
from runtime.wiring import Services

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxClient  # the client module: only when Proxmox is used

Progress = Callable[[str], None]
Clock = Callable[[], datetime]

# A clone refused because another caller took the id from /cluster/nextid first is asked again with a
# fresh id; more than this many collisions in a row means something else is wrong.
MAX_ID_ATTEMPTS = 8
_DISKS = ("scsi0", "virtio0", "sata0", "ide0")
_DEFAULTS = {"cores": 1, "memory_mib": 1024, "disk_gb": 10}
MIN_PREFIX = 4


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _quiet(_: str) -> None:
    pass


class MachineService:
    def __init__(
        self,
        *,
        settings: Settings,
        db: Database,
        proxmox: ProxmoxClient,
        locks: VmLocks,
        vms: VmLocator,
        services: Services | None = None,
        actor: str = "hubctl",
        clock: Clock = _utcnow,
        progress: Progress = _quiet,
    ) -> None:
        self.settings = settings
        self.db = db
        self.proxmox = proxmox
        self.locks = locks
        self.vms = vms
        self.services = services
        self.actor = actor
        self.clock = clock
        self.progress = progress

    @classmethod
    def build_from(cls, services: Services, *, actor: str, progress: Progress = _quiet) -> MachineService:
        return cls(
            settings=services.settings,
            db=services.ready_db(),
            proxmox=services.proxmox,
            locks=services.locks,
            vms=services.vms,
            services=services,
            actor=actor,
            progress=progress,
        )

    # ------------------------------------------------------------- settings

    def _pool(self) -> str:
        if not self.settings.pool:
            raise SettingsError(
                env_name("pool"), "required for machines (the pool hubinfra made for this Hub)"
            )
        return self.settings.pool

    def _template(self) -> int:
        if self.settings.task_template_vmid is None:
            raise SettingsError(env_name("task_template_vmid"), "required for machines")
        return self.settings.task_template_vmid

    def _network(self, wanted: str | None) -> str:
        networks = self.settings.task_network_list()
        if not networks:
            raise SettingsError(env_name("task_networks"), "required for machines")
        if wanted is None:
            return networks[0]
        if wanted not in networks:
            raise UsageError(
                f"--network: {wanted!r} is not one of the Hub's task networks ({', '.join(networks)})"
            )
        return wanted

    # ---------------------------------------------------------------- create

    def reserve(
        self,
        *,
        project: str,
        name: str | None = None,
        cores: int | None = None,
        memory_mib: int | None = None,
        disk_gb: int | None = None,
        network: str | None = None,
    ) -> MachineRecord:
        """Take the capacity for a new machine, or refuse naming the limit. No Proxmox call.

        A name that belongs to a machine of this project whose create did not finish (``creating``,
        or ``failed``: it still holds its capacity) returns that machine: the caller's ``build``
        resumes it (a create repeated after a crash or a failure)."""
        self._pool()
        self._template()
        net = self._network(network)
        if name is not None and not MACHINE_NAME.fullmatch(name):
            raise UsageError(f"--name {name!r}: lowercase letters, digits and '-' (a DNS name), at most 63")
        for label, value in (("cores", cores), ("memory-mib", memory_mib), ("disk-gb", disk_gb)):
            if value is not None and not (1 <= value <= 1_000_000_000):
                raise UsageError(f"--{label}: must be a positive whole number")
        if name is not None:
            pending = self._unfinished(project, name)
            if pending is not None:
                self.progress(f"machine {name} ({pending.uuid}) was being created: resuming it")
                if pending.status is MachineStatus.FAILED:  # its capacity is still held: no reserve
                    pending = self._update(
                        pending.uuid,
                        status=MachineStatus.CREATING,
                        error=None,
                        audit_action="machine.create",
                        outcome="resumed",
                        details={"step": pending.step.value},
                    )
                return pending
        req = quotas.Request(
            project=project,
            name=name or f"{project}-{secrets.token_hex(3)}",
            cores=cores or _DEFAULTS["cores"],
            memory_mib=memory_mib or _DEFAULTS["memory_mib"],
            disk_gb=disk_gb or _DEFAULTS["disk_gb"],
            network=net,
        )
        try:
            record = quotas.reserve(self.db, self.settings, req, actor=self.actor, now=self.clock())
        except QuotaExceeded as exc:
            quotas.refuse_audited(self.db, exc, req, actor=self.actor)
            raise
        self.progress(f"reserved machine {record.name} ({record.uuid}) in project {project}")
        return record

    def create(self, **request: Any) -> MachineRecord:
        """Reserve, then build (the CLI's create; the API reserves at once and builds in a job)."""
        return self.build(self.reserve(**request).uuid)

    def build(self, uuid: str) -> MachineRecord:
        """Walk the create steps from where the row says it stopped. Idempotent."""
        record = self.show(uuid)
        if record.status is not MachineStatus.CREATING:
            return record
        template = self.vms.locate(self._template())
        try:
            if record.vm_id is None:
                record = self._allocate(record)
            failpoints.reached("machine.allocated")
            with self.locks.hold(vm_lock_name(record.vm_id or 0), wait=self.settings.lock_wait_seconds):
                if record.step in (CreateStep.RESERVED, CreateStep.ALLOCATED):
                    record = self._clone(record, template)
                failpoints.reached("machine.cloned")
                vm = self.vms.locate(record.vm_id or 0)
                if record.step is CreateStep.CLONED:
                    record = self._configure(record, vm)
                failpoints.reached("machine.configured")
                if record.step is CreateStep.CONFIGURED:
                    self.proxmox.start(vm, timeout=self.settings.task_timeout_seconds)
                    record = self._update(
                        uuid,
                        step=CreateStep.STARTED,
                        status=MachineStatus.RUNNING,
                        node=vm.node,
                        audit_action="machine.create",
                        outcome="completed",
                        details={"vm_id": vm.vmid, "node": vm.node},
                    )
                    self.progress(f"machine {record.name} started (VM {vm.vmid} on {vm.node})")
        except ProxmoxTaskTimeout as exc:
            raise MachineError(
                f"machine {record.name}: a Proxmox task is still running after our bound ({exc}); the "
                "machine stays 'creating': run the same create (same --name) again to finish it"
            ) from exc
        except (ProxmoxError, NotOwnedError) as exc:
            failed = self._update(
                uuid,
                status=MachineStatus.FAILED,
                error=str(exc),
                audit_action="machine.create",
                outcome="failed",
                details={"step": self.show(uuid).step.value, "error": str(exc)},
            )
            raise MachineError(
                f"machine {failed.name} failed at step {failed.step}: {exc} (its capacity stays "
                "held: run the same create again to retry, or hubctl machine destroy)"
            ) from exc
        return record

    def _allocate(self, record: MachineRecord, *, avoid: int | None = None) -> MachineRecord:
        vmid = self.proxmox.next_vmid()
        if avoid is not None and vmid == avoid:
            vmid = self.proxmox.next_vmid()
        self.progress(f"allocated VM id {vmid} (from /cluster/nextid)")
        return self._update(record.uuid, vm_id=vmid, step=CreateStep.ALLOCATED)

    def _clone(self, record: MachineRecord, template: VmRef) -> MachineRecord:
        for _ in range(MAX_ID_ATTEMPTS):
            vmid = record.vm_id
            assert vmid is not None
            existing = self._resource(vmid)
            if existing is not None:
                if self._half_made(existing, record):
                    self.progress(f"VM {vmid} carries machine {record.uuid}: resuming the half-made VM")
                    self._wait_unlocked(existing.ref)
                    return self._update(record.uuid, step=CreateStep.CLONED, node=existing.node)
                self.progress(f"VM id {vmid} is taken by a VM that is not this machine's: asking for another")
                record = self._allocate(record, avoid=vmid)
                continue
            try:
                self.proxmox.clone(
                    template,
                    newid=vmid,
                    name=record.name,
                    pool=self._pool(),
                    full=self.settings.machine_full_clone,
                    description=describe(uuid=record.uuid, project=record.project, name=record.name),
                    timeout=self.settings.task_timeout_seconds,
                )
            except ProxmoxConflict:
                # Someone took the id between nextid and our clone; the next round sees who.
                self.vms.forget()
                continue
            self.vms.forget()
            located = self.vms.locate(vmid)
            self.progress(f"cloned template {template.vmid} to VM {vmid} on {located.node}")
            return self._update(
                record.uuid,
                step=CreateStep.CLONED,
                node=located.node,
                audit_action="machine.create",
                outcome="cloned",
                details={"vm_id": vmid, "node": located.node},
            )
        raise MachineError(f"machine {record.name}: no free VM id after {MAX_ID_ATTEMPTS} attempts")

    def _configure(self, record: MachineRecord, vm: VmRef) -> MachineRecord:
        config = self.proxmox.vm_config(vm)
        if uuid_in(str(config.get("description") or "")) != record.uuid:
            raise NotOwnedError(f"VM {vm.vmid} does not carry machine {record.uuid}'s marker: not touched")
        changes: dict[str, str | int] = {
            "cores": record.cores,
            "memory": record.memory_mib,
            "tags": tags_for(record.project),
            "net0": f"virtio,bridge={record.network}",
            "ipconfig0": "ip=dhcp",
        }
        if self.settings.machine_ci_user:
            changes["ciuser"] = self.settings.machine_ci_user
        if self.settings.machine_ssh_keys:
            # PVE wants the keys URL-encoded (qemu-server src/PVE/QemuServer.pm: sshkeys has format
            # 'urlencoded'); the form encoding then escapes them again, which PVE undoes twice.
            changes["sshkeys"] = quote(self.settings.machine_ssh_keys.strip() + "\n", safe="")
        self.proxmox.update_vm_config(vm, timeout=self.settings.task_timeout_seconds, **changes)
        disk, size = _boot_disk(config)
        if disk is not None and record.disk_gb > size:
            self.proxmox.resize_disk(
                vm, disk=disk, size_gib=record.disk_gb, timeout=self.settings.task_timeout_seconds
            )
        self.progress(
            f"configured VM {vm.vmid}: {record.cores} cores, {record.memory_mib} MiB, "
            f"{record.disk_gb} GiB, {record.network}"
        )
        return self._update(record.uuid, step=CreateStep.CONFIGURED)

    def _wait_unlocked(self, vm: VmRef) -> None:
        """A half-made VM may still be locked by its clone task: wait for that task to end."""
        import time

        deadline = time.monotonic() + self.settings.task_timeout_seconds
        while self.proxmox.vm_status(vm).lock == "clone":
            if time.monotonic() >= deadline:
                raise ProxmoxTaskTimeout(f"VM {vm.vmid} still locked by its clone", upid="")
            time.sleep(1.0)

    # ----------------------------------------------------------- operations

    def start(self, ref: str) -> MachineRecord:
        return self._act(ref, "start")

    def stop(self, ref: str, *, why: str = "requested") -> MachineRecord:
        return self._act(ref, "stop", why=why)

    def destroy(self, ref: str) -> MachineRecord:
        return self._act(ref, "destroy")

    def snapshot(self, ref: str, *, reason: str | None = None) -> dict[str, Any]:
        """A checkpoint of the machine's VM through the checkpoint service (the same three-step
        protocol and retention; the project's retention rule applies to it)."""
        from runtime.checkpoints.service import CheckpointService

        record = self.resolve(ref)
        vm = self._live(record)
        self._check_owned(vm, record, strict=True)
        if self.services is None:
            raise MachineError("snapshot needs the runtime's services")
        svc = CheckpointService.build(self.services, actor=self.actor, progress=self.progress)
        cp = svc.create(vmid=vm.vmid, reason=reason or f"machine {record.name} ({record.project})")
        with self.db.session() as s:
            audit.record(
                s,
                actor=self.actor,
                action="machine.snapshot",
                target=record.uuid,
                outcome="completed",
                details={"vm_id": vm.vmid, "checkpoint": cp.uuid},
            )
        return {"machine": self.show(record.uuid).to_public(), "checkpoint": cp.to_public()}

    def _act(self, ref: str, action: str, *, why: str = "requested") -> MachineRecord:
        record = self.resolve(ref)
        if record.status is MachineStatus.DESTROYED:
            if action == "destroy":
                return record
            raise UsageError(f"machine {record.name} is destroyed")
        if record.vm_id is None:
            if action == "destroy":  # reserved, never allocated: only the row to release
                return self._update(
                    record.uuid,
                    status=MachineStatus.DESTROYED,
                    destroyed_at=self.clock(),
                    audit_action="machine.destroy",
                    outcome="completed",
                    details={"vm_id": None},
                )
            raise UsageError(f"machine {record.name} has no VM yet")
        vm_id = record.vm_id
        failpoints.reached(f"machine.{action}.unlocked")
        with self.locks.hold(vm_lock_name(vm_id), wait=self.settings.lock_wait_seconds):
            # Read again: a destroy that held the lock may have finished while this waited; its VM
            # is gone then, and that is not a machine gone 'missing'.
            record = self.show(record.uuid)
            if record.status is MachineStatus.DESTROYED:
                if action == "destroy":
                    return record
                raise UsageError(f"machine {record.name} is destroyed")
            resource = self._resource(vm_id)
            if resource is None:
                if action == "destroy":
                    return self._update(
                        record.uuid,
                        status=MachineStatus.DESTROYED,
                        destroyed_at=self.clock(),
                        audit_action="machine.destroy",
                        outcome="completed",
                        details={"vm_id": record.vm_id, "note": "the VM was already gone"},
                    )
                self._update(
                    record.uuid,
                    status=MachineStatus.MISSING,
                    audit_action=f"machine.{action}",
                    outcome="failed",
                    details={"vm_id": record.vm_id, "error": "VM not in the cluster"},
                )
                raise MachineError(
                    f"machine {record.name}: VM {record.vm_id} is no longer in the cluster (now 'missing'; "
                    "hubctl machine destroy releases it)"
                )
            vm = resource.ref
            self._check_owned(vm, record, strict=record.step not in (CreateStep.ALLOCATED, CreateStep.CLONED))
            self._audit(
                record.uuid, f"machine.{action}", "started", {"vm_id": vm.vmid, "node": vm.node, "why": why}
            )
            timeout = self.settings.task_timeout_seconds
            try:
                if action == "start":
                    self.proxmox.start(vm, timeout=timeout)
                    status = MachineStatus.RUNNING
                elif action == "stop":
                    self.proxmox.shutdown(vm, timeout=min(120.0, timeout), force_stop=True)
                    status = MachineStatus.STOPPED
                else:
                    self.proxmox.stop(vm, timeout=timeout)
                    self.proxmox.destroy(vm, purge=True, timeout=timeout)
                    status = MachineStatus.DESTROYED
            except ProxmoxError as exc:
                self._audit(record.uuid, f"machine.{action}", "failed", {"vm_id": vm.vmid, "error": str(exc)})
                raise MachineError(f"machine {record.name}: {action} failed: {exc}") from exc
            self.vms.forget()
            values: dict[str, Any] = {"status": status, "node": vm.node}
            if status is MachineStatus.DESTROYED:
                values["destroyed_at"] = self.clock()
            if status is MachineStatus.RUNNING:
                values.update(idle=False, idle_since=None)
            done = self._update(
                record.uuid,
                audit_action=f"machine.{action}",
                outcome="completed",
                details={"vm_id": vm.vmid, "node": vm.node, "why": why},
                **values,
            )
        self.progress(f"machine {done.name}: {action} done")
        return done

    # -------------------------------------------------------------- ownership

    def _check_owned(self, vm: VmRef, record: MachineRecord, *, strict: bool) -> None:
        """The last guard before a change: the VM's tag and uuid line must name this machine.

        ``strict=False`` only for a create that died between clone and configure: the clone wrote
        the uuid line, the tags come with configure."""
        try:
            config = self.proxmox.vm_config(vm)
        except ProxmoxNotFound as exc:
            raise MachineError(f"VM {vm.vmid} is gone") from exc
        tags = {t for t in str(config.get("tags") or "").replace(",", ";").replace(" ", ";").split(";") if t}
        ours = uuid_in(str(config.get("description") or "")) == record.uuid
        tagged = MACHINE_TAG in tags and project_tag(record.project) in tags
        if not ours or (strict and not tagged):
            raise NotOwnedError(
                f"VM {vm.vmid} does not carry machine {record.uuid}'s marker (tag {MACHINE_TAG} and "
                f"hub-machine-uuid line): the Hub does not act on it"
            )

    def _half_made(self, resource: VmResource, record: MachineRecord) -> bool:
        if resource.pool not in (None, self.settings.pool):
            return False
        try:
            config = self.proxmox.vm_config(resource.ref)
        except ProxmoxNotFound:
            return False
        return uuid_in(str(config.get("description") or "")) == record.uuid

    def _resource(self, vmid: int) -> VmResource | None:
        for vm in self.vms.all(fresh=True):
            if vm.vmid == vmid:
                return vm
        return None

    def _live(self, record: MachineRecord) -> VmRef:
        if record.vm_id is None or record.status in (MachineStatus.DESTROYED, MachineStatus.MISSING):
            raise UsageError(f"machine {record.name} has no VM ({record.status})")
        return self.vms.locate(record.vm_id)

    # ------------------------------------------------------------------ rows

    def show(self, uuid: str) -> MachineRecord:
        with self.db.session() as s:
            row = s.get(Machine, uuid)
            if row is None:
                raise UnknownMachine(f"no machine {uuid}")
            return MachineRecord.of(row)

    def resolve(self, ref: str) -> MachineRecord:
        return resolve(self.db, ref)

    def _unfinished(self, project: str, name: str) -> MachineRecord | None:
        with self.db.session() as s:
            row = s.scalars(
                select(Machine).where(
                    Machine.name == name,
                    Machine.project == project,
                    Machine.status.in_((MachineStatus.CREATING.value, MachineStatus.FAILED.value)),
                )
            ).first()
            return MachineRecord.of(row) if row is not None else None

    def _audit(self, target: str, action: str, outcome: str, details: dict[str, Any]) -> None:
        with self.db.session() as s:
            audit.record(s, actor=self.actor, action=action, target=target, outcome=outcome, details=details)

    def _update(
        self,
        uuid: str,
        *,
        audit_action: str | None = None,
        outcome: str = "completed",
        details: dict[str, Any] | None = None,
        **values: Any,
    ) -> MachineRecord:
        with self.db.session() as s:
            row = s.get_one(Machine, uuid)
            for key, value in values.items():
                setattr(row, key, value.value if isinstance(value, StrEnum) else value)
            row.updated_at = self.clock()
            if audit_action is not None:
                audit.record(
                    s,
                    actor=self.actor,
                    action=audit_action,
                    target=uuid,
                    outcome=outcome,
                    details=details or {},
                )
            s.flush()
            return MachineRecord.of(row)


def resolve(db: Database, ref: str) -> MachineRecord:
    """The machine ``ref`` names: its uuid, a unique prefix of it (4+ hex digits), or its name
    (the checkpoint reference rules, plus names). A destroyed machine is found by uuid only."""
    text = ref.strip().lower()
    with db.session() as s:
        if len(text) == 36:
            row = s.get(Machine, text)
            if row is not None:
                return MachineRecord.of(row)
        named = list(
            s.scalars(
                select(Machine).where(Machine.name == text, Machine.status != MachineStatus.DESTROYED.value)
            )
        )
        if len(named) == 1:
            return MachineRecord.of(named[0])
        digits = text.replace("-", "")
        if len(digits) >= MIN_PREFIX and all(c in "0123456789abcdef" for c in digits):
            rows = list(
                s.scalars(select(Machine).where(Machine.uuid.startswith(text, autoescape=True)).limit(11))
            )
            if len(rows) == 1:
                return MachineRecord.of(rows[0])
            if len(rows) > 1:
                shown = ", ".join(r.uuid for r in rows[:10])
                raise UsageError(f"machine prefix {ref!r} is ambiguous: it matches {shown}")
    raise UnknownMachine(f"no machine named or with uuid prefix {ref!r}")


def _boot_disk(config: dict[str, Any]) -> tuple[str | None, int]:
    """The first disk of the config and its size in GiB (0 when it says none)."""
    import re

    for key in _DISKS:
        value = str(config.get(key) or "")
        if value and "media=cdrom" not in value:
            m = re.search(r"size=(\d+(?:\.\d+)?)([KMGT]?)", value)
            if not m:
                return key, 0
            factor = {"K": 1 / 1024**2, "M": 1 / 1024, "G": 1, "T": 1024, "": 1 / 1024**3}[m.group(2)]
            return key, int(float(m.group(1)) * factor)
    return None, 0
