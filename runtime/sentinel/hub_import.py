"""The Hub's side of the journal: import the sentinel's events from the Hub VM's description.

A rollback puts the Hub's database back to its checkpoint, so what the sentinel did afterwards (the
very rollback that restored it) is in no row. The sentinel mirrors its journal on the VM's
description, which a rollback keeps (pve-guest-common ``src/PVE/AbstractConfig.pm``
__snapshot_apply_config), and the Hub imports it at start and at each reconcile: idempotent (an
event's id is its key), so ``hubctl recovery list`` shows every event, including those that happened
after the Hub's own checkpoint.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from runtime.sentinel import mirror

if TYPE_CHECKING:
    from runtime.db import Database
    from runtime.wiring import Services


def import_recovery_journal(services: Services) -> int:
    """Import new journal events of the Hub VM; returns how many were new."""
    from runtime.db.models import RecoveryEvent

    vmid = services.settings.hub_vmid()
    ref = services.vms.locate(vmid)
    config = services.proxmox.vm_config(ref)
    journal = mirror.parse(str(config.get("description") or "")).journal
    if not journal:
        return 0
    db = services.ready_db()
    now = datetime.now(UTC)
    with db.session() as session:
        known = {
            row
            for (row,) in session.query(RecoveryEvent.id).filter(
                RecoveryEvent.id.in_([e.id for e in journal])
            )
        }
        added = 0
        for event in journal:
            if event.id in known:
                continue
            session.add(
                RecoveryEvent(
                    id=event.id,
                    vm_id=vmid,
                    at=event.at,
                    kind=event.kind,
                    checkpoint=event.checkpoint,
                    outcome=event.outcome,
                    detail=event.detail,
                    imported_at=now,
                )
            )
            added += 1
    return added


def recovery_events(db: Database, *, limit: int = 200) -> list[dict[str, object]]:
    from runtime.db.models import RecoveryEvent

    with db.session() as session:
        rows = (
            session.query(RecoveryEvent)
            .order_by(RecoveryEvent.at.desc(), RecoveryEvent.id)
            .limit(limit)
            .all()
        )
        return [row.to_public() for row in reversed(rows)]
