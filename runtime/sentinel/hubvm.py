"""The Hub VM as the sentinel sees it through the Proxmox API: where it is, its checkpoints, and the
sentinel's lines (lease, journal) on its description, written by compare-and-set.

The lease: two sentinels started at once must act once, and each has its own database, so the lease
lives where both look, on the Hub VM itself. A write of the description carries the config
``digest`` that was read; PVE refuses it when the config changed in between (qemu-server
``src/PVE/API2/Qemu.pm`` update_vm_api: "checksum mismatch (file change by other user?)", checked
under ``lock_config``), so of two sentinels that read "no lease" exactly one writes its own.
"""

from __future__ import annotations

import uuid as uuidlib
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from hubcore.proxmox import ProxmoxClient
from hubcore.proxmox.errors import ProxmoxConflict
from hubcore.proxmox.vms import VmRef, VmResource
from runtime.checkpoints.naming import describe, owned, snapname_for
from runtime.sentinel import mirror
from runtime.sentinel.errors import LeaseHeld, SentinelError
from runtime.sentinel.records import Candidate, Event

MAINTENANCE_TAG = "hub-maintenance"
# Forever, for a lease that marks the Hub `error`: no sentinel acts until a person resets it.
ERROR_LEASE = timedelta(days=36500)
_CAS_ATTEMPTS = 5


class HubVm:
    def __init__(self, proxmox: ProxmoxClient, vmid: int) -> None:
        self.proxmox = proxmox
        self.vmid = vmid

    # -------------------------------------------------------------------- reads

    def resource(self) -> VmResource:
        """The VM's row in ``/cluster/resources`` (its node is never assumed from settings)."""
        for vm in self.proxmox.cluster_vms():
            if vm.vmid == self.vmid:
                return vm
        raise SentinelError(
            f"the Hub VM {self.vmid} is not in the cluster's resources (or the token may not see it)"
        )

    def ref(self) -> VmRef:
        return self.resource().ref

    def candidates(self, ref: VmRef) -> list[Candidate]:
        """The Hub's own complete checkpoints, newest first; never a foreign snapshot, never an
        emergency (pre-recovery) one."""
        found: list[Candidate] = []
        for snap in self.proxmox.list_snapshots(ref.node, ref.vmid):
            claim = owned(snap.name, snap.description)
            if claim is None or not snap.complete:
                continue
            if claim.kind == "emergency" or claim.reason == "pre-recovery":
                continue
            created = claim.created_at
            if created is None and snap.snaptime:
                created = datetime.fromtimestamp(snap.snaptime, UTC)
            found.append(
                Candidate(snap.name, claim.uuid, created, claim.blessed_at is not None, snap.vmstate)
            )
        found.sort(key=lambda c: c.created_at or datetime.min.replace(tzinfo=UTC), reverse=True)
        return found

    def own_snapshot(self, ref: VmRef, wanted: str) -> Candidate:
        """One of the Hub's snapshots by uuid or name, for an operator's rollback (emergency ones too:
        an operator may want the broken state back); a foreign snapshot is refused."""
        from runtime.sentinel.errors import SentinelUsageError

        for snap in self.proxmox.list_snapshots(ref.node, ref.vmid):
            claim = owned(snap.name, snap.description)
            if claim is None:
                continue
            if wanted in (snap.name, claim.uuid):
                if not snap.complete:
                    raise SentinelUsageError(f"{snap.name} is incomplete (snapstate {snap.snapstate})")
                return Candidate(
                    snap.name, claim.uuid, claim.created_at, claim.blessed_at is not None, snap.vmstate
                )
        raise SentinelUsageError(
            f"--to {wanted}: no checkpoint of the Hub (VM {self.vmid}) with that uuid or name"
        )

    def description(self, ref: VmRef) -> tuple[mirror.Description, str]:
        config = self.proxmox.vm_config(ref)
        return mirror.parse(str(config.get("description") or "")), str(config.get("digest") or "")

    # ------------------------------------------------------------------- writes

    def update_description(
        self, ref: VmRef, change: Callable[[mirror.Description], mirror.Description]
    ) -> None:
        """Read, change, write with the digest read; again on a conflict (someone wrote in between)."""
        for attempt in range(_CAS_ATTEMPTS):
            current, digest = self.description(ref)
            wanted = change(current)
            text = wanted.render()
            if text == current.render():
                return
            try:
                self.proxmox.set_vm_config_checked(ref, digest=digest, description=text)
                return
            except ProxmoxConflict:
                if attempt == _CAS_ATTEMPTS - 1:
                    raise

    def acquire_lease(self, ref: VmRef, holder: str, *, now: datetime, ttl: timedelta) -> None:
        """Take or renew the recovery lease; LeaseHeld when another sentinel's lease is live."""

        def take(current: mirror.Description) -> mirror.Description:
            lease = current.lease
            if lease is not None and lease.holder != holder and lease.live(now):
                raise LeaseHeld(
                    f"sentinel {lease.holder} holds the recovery lease until {lease.expires.isoformat()}"
                )
            return mirror.Description(current.other, mirror.Lease(holder, now + ttl), current.journal)

        self.update_description(ref, take)

    def release_lease(self, ref: VmRef, holder: str | None) -> None:
        """Drop the lease (``holder`` None: whoever holds it, for an operator's reset)."""

        def drop(current: mirror.Description) -> mirror.Description:
            if current.lease is None or (holder is not None and current.lease.holder != holder):
                return current
            return mirror.Description(current.other, None, current.journal)

        self.update_description(ref, drop)

    def mirror_events(self, ref: VmRef, events: list[Event]) -> None:
        self.update_description(ref, lambda current: mirror.with_events(current, events))

    def emergency_snapshot(
        self, ref: VmRef, *, snapname: str, checkpoint: str, now: datetime, timeout: float
    ) -> bool:
        """Snapshot the broken state (kind emergency, reason pre-recovery). True when it exists after."""
        if any(s.name == snapname and s.complete for s in self.proxmox.list_snapshots(ref.node, ref.vmid)):
            return True  # a killed sentinel's attempt got through
        description = describe(uuid=checkpoint, kind="emergency", created_at=now, reason="pre-recovery")
        self.proxmox.take_snapshot(
            ref.node, ref.vmid, name=snapname, description=description, timeout=timeout
        )
        return True


def new_emergency_name() -> tuple[str, str]:
    uuid = str(uuidlib.uuid4())
    return snapname_for(uuid), uuid


# What the sentinel's token needs, granted on the Hub VM alone (/vms/<hub vmid>), nothing else:
# hubinfra's sentinel token should be given exactly these (tests/runtime/sentinel/test_privileges.py
# shows they suffice and that anything beyond is refused).
SENTINEL_PRIVILEGES: dict[str, str] = {
    "VM.Audit": "read the Hub VM's status, config (description, digest) and snapshot list",
    "VM.Snapshot": "take the emergency pre-recovery snapshot",
    "VM.Snapshot.Rollback": "roll back to a checkpoint",
    "VM.PowerMgmt": "shutdown, stop, start and resume the Hub VM (and rollback with start=1)",
    "VM.Config.Options": "write the recovery lease and journal on the Hub VM's description",
}
