"""Read-only views of checkpoints: need the database only, never Proxmox."""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from runtime.db import Checkpoint, CheckpointStatus, Database
from runtime.errors import NotFoundError


class CheckpointQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def show(self, uuid: str) -> dict[str, Any]:
        with self.db.session() as s:
            cp = s.get(Checkpoint, uuid)
            if cp is None:
                raise NotFoundError(f"no checkpoint with uuid {uuid}")
            return cp.to_public()

    def list(
        self,
        *,
        status: CheckpointStatus | None = None,
        vmid: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        with self.db.session() as s:
            return [
                cp.to_public() for cp in list_rows(s, status=status, vmid=vmid, limit=limit, offset=offset)
            ]

    def page(
        self,
        *,
        status: CheckpointStatus | None = None,
        vmid: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """One page and the total, in one transaction (the API's hot path: one session, no ORM
        identity map for rows that are only serialised)."""
        where: list[ColumnElement[bool]] = []
        if status is not None:
            where.append(Checkpoint.status == status.value)
        if vmid is not None:
            where.append(Checkpoint.vm_id == vmid)
        rows_q = (
            select(Checkpoint)
            .where(*where)
            .order_by(Checkpoint.created_at.desc(), Checkpoint.uuid)
            .limit(limit)
            .offset(offset)
        )
        with self.db.session() as s:
            total = int(s.scalar(select(func.count()).select_from(Checkpoint).where(*where)) or 0)
            items = [cp.to_public() for cp in s.scalars(rows_q)]
        return items, total


def list_rows(
    session: Session,
    *,
    status: CheckpointStatus | None = None,
    vmid: int | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[Checkpoint]:
    """Newest first; ties (same instant) broken by uuid so pages are stable."""
    query = select(Checkpoint).order_by(Checkpoint.created_at.desc(), Checkpoint.uuid)
    if status is not None:
        query = query.where(Checkpoint.status == status.value)
    if vmid is not None:
        query = query.where(Checkpoint.vm_id == vmid)
    if offset:
        query = query.offset(offset)
    if limit is not None:
        query = query.limit(limit)
    return list(session.scalars(query))
