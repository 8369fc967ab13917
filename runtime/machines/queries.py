"""Reads of machine rows (the CLI's and the API's lists)."""

from __future__ import annotations

from sqlalchemy import select

from runtime.db import Database
from runtime.db.models import Machine
from runtime.machines.records import MachineRecord, MachineStatus


def list_machines(
    db: Database, *, project: str | None = None, destroyed: bool = False
) -> list[MachineRecord]:
    query = select(Machine).order_by(Machine.created_at.desc(), Machine.uuid)
    if project is not None:
        query = query.where(Machine.project == project)
    if not destroyed:
        query = query.where(Machine.status != MachineStatus.DESTROYED.value)
    with db.session() as s:
        return [MachineRecord.of(r) for r in s.scalars(query)]
