"""How a Hub checkpoint is named and recognised on Proxmox.

A snapshot is the Hub's only if BOTH hold: its name is ``hub-`` + 32 hex digits (valid for PVE:
starts with a letter, 36 characters, within the 40 allowed), and its description carries the same
uuid on a ``hub-uuid:`` line. Anything else is foreign and never modified or deleted. The
description also carries what a Hub whose database was rolled back needs to re-import the
checkpoint: its kind, reason and creation time.
"""

from __future__ import annotations

import re
import uuid as uuidlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from hubcore.contract import is_valid_snapshot_name
from runtime.errors import OperationError

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxClient

PREFIX = "hub-"
_NAME = re.compile(r"^hub-([0-9a-f]{32})$")
_FIELD = re.compile(r"^hub-(uuid|kind|label|created|reason|protected|blessed): ?(.*)$", re.MULTILINE)
HEADER = "Hub checkpoint (managed by hubctl; do not edit these lines)"


def snapname_for(uuid: str) -> str:
    return PREFIX + uuidlib.UUID(uuid).hex


def is_hub_snapname(name: str) -> bool:
    return bool(_NAME.match(name))


def remove_hub_snapshot(
    proxmox: ProxmoxClient, *, node: str, vmid: int, name: str, force: bool, timeout: float
) -> bool:
    """Delete one of the Hub's snapshots (idempotent: False if it was already gone).

    The last guard before a delete: whatever the caller checked, a name that is not the Hub's is
    refused here, so no code path can remove a snapshot the Hub did not create.
    """
    if not is_hub_snapname(name):
        raise OperationError(f"refusing to delete {name}: not a Hub snapshot name")
    return proxmox.remove_snapshot(node, vmid, name=name, force=force, timeout=timeout)


def valid_pve_snapname(name: str) -> bool:
    """PVE's snapshot-name rule, the one hubinfra applies to an experiment's checkpoint."""
    return is_valid_snapshot_name(name)


def describe(
    *,
    uuid: str,
    kind: str,
    created_at: datetime,
    reason: str | None,
    protected: bool = False,
    label: str | None = None,
    blessed_at: datetime | None = None,
) -> str:
    lines = [
        HEADER,
        f"hub-uuid: {uuid}",
        f"hub-kind: {kind}",
        f"hub-created: {created_at.astimezone(UTC).isoformat()}",
    ]
    if label and label != kind:
        # The retention pool survives a rollback of the database with the snapshot itself.
        lines.append(f"hub-label: {label}")
    if reason:
        # One line: the description is line-oriented and an operator's text must not forge a field.
        lines.append("hub-reason: " + " ".join(reason.split())[:500])
    if protected:
        lines.append("hub-protected: yes")
    if blessed_at is not None:
        # On the snapshot itself, so a Hub whose database was rolled back, and the sentinel outside
        # the VM, know which checkpoints proved good from Proxmox alone.
        lines.append(f"hub-blessed: {blessed_at.astimezone(UTC).isoformat()}")
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class Ownership:
    uuid: str
    kind: str | None
    created_at: datetime | None
    reason: str | None
    protected: bool
    label: str | None = None
    blessed_at: datetime | None = None


def _when(value: str | None) -> datetime | None:
    if not value or not value.strip():
        return None
    try:
        return datetime.fromisoformat(value.strip()).astimezone(UTC)
    except ValueError:
        return None


def owned(name: str, description: str) -> Ownership | None:
    """The Hub's claim on a snapshot, or None when the snapshot is foreign."""
    match = _NAME.match(name)
    if not match:
        return None
    fields = dict(_FIELD.findall(description or ""))
    try:
        claimed = uuidlib.UUID(fields.get("uuid", "").strip())
    except ValueError:
        return None
    if claimed.hex != match.group(1):
        return None
    return Ownership(
        uuid=str(claimed),
        kind=(fields.get("kind") or "").strip() or None,
        created_at=_when(fields.get("created")),
        reason=(fields.get("reason") or "").strip() or None,
        protected=(fields.get("protected") or "").strip() == "yes",
        label=(fields.get("label") or "").strip() or None,
        blessed_at=_when(fields.get("blessed")),
    )
