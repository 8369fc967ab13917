"""Read-only views of checkpoints: need the database only, never Proxmox."""

from __future__ import annotations

import functools
import re
import uuid as uuidlib
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Executable, Select, String, bindparam, func, select, type_coerce

from runtime.checkpoints.records import CheckpointKind, CheckpointRecord, CheckpointStatus, iso
from runtime.db import Checkpoint, Database
from runtime.db.session import UNAVAILABLE, reason
from runtime.errors import DatabaseError, NotFoundError, UsageError

MIN_PREFIX = 4  # as git and docker: shorter prefixes match too much to be meant
_HEX = re.compile(r"^[0-9a-f]+$")
_SNAPNAME = re.compile(r"^hub-([0-9a-f]{32})$")


class CheckpointQueries:
    def __init__(self, db: Database) -> None:
        self.db = db

    def show(self, uuid: str) -> CheckpointRecord:
        with self.db.session() as s:
            row = s.get(Checkpoint, uuid)
            if row is None:
                raise NotFoundError(f"no checkpoint with uuid {uuid}")
            return CheckpointRecord.of(row)

    def resolve(self, ref: str) -> CheckpointRecord:
        """The checkpoint named by ``ref``: its full uuid, a unique prefix of it (at least
        ``MIN_PREFIX`` hex digits, dashes optional) or its snapshot name (``hub-<32 hex>``).

        Unknown: ``NotFoundError``. Not a checkpoint reference, too short or ambiguous: ``UsageError``
        (the message lists the matches)."""
        text = ref.strip().lower()
        named = _SNAPNAME.match(text)
        if named:
            return self.show(str(uuidlib.UUID(named.group(1))))
        digits = text.replace("-", "")
        if not digits or not _HEX.match(digits):
            raise UsageError(f"not a checkpoint uuid, prefix or snapshot name: {ref!r}")
        if len(digits) == 32:
            return self.show(str(uuidlib.UUID(digits)))
        if len(digits) > 32:
            raise UsageError(f"not a checkpoint uuid, prefix or snapshot name: {ref!r}")
        if len(digits) < MIN_PREFIX:
            raise UsageError(f"checkpoint prefix {ref!r} is too short: give at least {MIN_PREFIX} hex digits")
        # Stored uuids are canonical (8-4-4-4-12, lower case): match the prefix in that form.
        canonical = str(uuidlib.UUID(digits.ljust(32, "0")))
        prefix = canonical[: len(digits) + sum(1 for i in (8, 12, 16, 20) if len(digits) > i)]
        with self.db.session() as s:
            rows = list(
                s.scalars(
                    select(Checkpoint)
                    .where(Checkpoint.uuid.startswith(prefix, autoescape=True))
                    .order_by(Checkpoint.created_at.desc(), Checkpoint.uuid)
                    .limit(11)
                )
            )
            found = [CheckpointRecord.of(row) for row in rows]
        if not found:
            raise NotFoundError(f"no checkpoint with uuid prefix {ref}")
        if len(found) > 1:
            shown = ", ".join(cp.uuid for cp in found[:10]) + (", ..." if len(found) > 10 else "")
            raise UsageError(f"checkpoint prefix {ref!r} is ambiguous: it matches {shown}")
        return found[0]

    def list(
        self,
        *,
        status: CheckpointStatus | None = None,
        vmid: int | None = None,
        limit: int | None = None,
        offset: int = 0,
    ) -> list[CheckpointRecord]:
        """Newest first; ties (same instant) broken by uuid so pages are stable."""
        query = _newest_first(_filters(status=status, vmid=vmid)).offset(offset)
        if limit is not None:
            query = query.limit(limit)
        with self.db.session() as s:
            return [CheckpointRecord.of(row) for row in s.scalars(query)]

    def page(
        self,
        *,
        status: CheckpointStatus | None = None,
        vmid: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[CheckpointRecord], int]:
        """One page and the total, in one transaction (the API's hot path)."""
        where = _filters(status=status, vmid=vmid)
        with self.db.session() as s:
            total = int(s.scalar(select(func.count()).select_from(Checkpoint).where(*where)) or 0)
            items = [
                CheckpointRecord.of(row)
                for row in s.scalars(_newest_first(where).limit(limit).offset(offset))
            ]
        return items, total

    def page_public(
        self,
        *,
        status: CheckpointStatus | None = None,
        vmid: int | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> tuple[list[dict[str, Any]], int]:
        """``page``, already in the public shape (``CheckpointRecord.to_public``): the API's list.

        The same rows in the same order, read as plain column tuples and formatted directly: building
        an ORM object and a record per row cost more than the read itself (issue 9). The output is
        the record's ``to_public`` exactly (tests/runtime/checkpoints/test_queries_public.py)."""
        sqlite = self.db.is_sqlite
        count, query = _page_statements(status is not None, vmid is not None, sqlite)
        values: dict[str, Any] = {"limit": limit, "offset": offset}
        if status is not None:
            values["status"] = status.value
        if vmid is not None:
            values["vmid"] = vmid
        try:
            # A Core connection in one transaction: no Session, no ORM result machinery.
            with self.db.engine.begin() as conn:
                total = int(conn.execute(count, values).scalar() or 0)
                rows = conn.execute(query, values).all()
        except UNAVAILABLE as exc:
            raise DatabaseError(f"database error: {reason(exc)}") from None
        public = _public_sqlite if sqlite else _public
        return [public(*row) for row in rows], total

    def vms_with_rows(self) -> list[int]:
        """Every VM the Hub has checkpoints of: what a reconcile of all owned VMs visits."""
        with self.db.session() as s:
            return list(s.scalars(select(Checkpoint.vm_id).distinct().order_by(Checkpoint.vm_id)))

    def vms_with_unsettled_rows(self) -> list[int]:
        """VMs with a checkpoint still 'creating' or 'failed': what a periodic reconcile must visit."""
        unsettled = (CheckpointStatus.CREATING.value, CheckpointStatus.FAILED.value)
        with self.db.session() as s:
            return list(
                s.scalars(select(Checkpoint.vm_id).where(Checkpoint.status.in_(unsettled)).distinct())
            )


_PUBLIC_COLUMNS = (
    Checkpoint.uuid,
    Checkpoint.vm_id,
    Checkpoint.node,
    Checkpoint.snapname,
    Checkpoint.kind,
    Checkpoint.status,
    Checkpoint.reason,
    Checkpoint.created_at,
    Checkpoint.completed_at,
    Checkpoint.error,
    Checkpoint.protected,
    Checkpoint.upid,
    Checkpoint.label,
    Checkpoint.vmstate,
    Checkpoint.blessed_at,
    Checkpoint.bless_refused,
)


@functools.cache
def _page_statements(by_status: bool, by_vm: bool, sqlite: bool) -> tuple[Executable, Executable]:
    """The count and the page for one combination of filters, built once (building a statement and
    its cache key per request cost as much as running it); values are bound at execution. On SQLite
    the two timestamps are read as the text SQLAlchemy stored (``_public_sqlite`` formats it)."""
    where: list[ColumnElement[bool]] = []
    if by_status:
        where.append(Checkpoint.status == bindparam("status"))
    if by_vm:
        where.append(Checkpoint.vm_id == bindparam("vmid"))
    count = select(func.count()).select_from(Checkpoint).where(*where)
    columns: tuple[Any, ...] = _SQLITE_COLUMNS if sqlite else _PUBLIC_COLUMNS
    page = (
        select(*columns)
        .where(*where)
        .order_by(Checkpoint.created_at.desc(), Checkpoint.uuid)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
    )
    return count, page


# SQLAlchemy's SQLite DATETIME storage: "YYYY-MM-DD HH:MM:SS.ffffff", UTC here (UTCDateTime).
_SQLITE_COLUMNS = tuple(
    type_coerce(column, String()) if column.key in ("created_at", "completed_at", "blessed_at") else column
    for column in _PUBLIC_COLUMNS
)


def _iso_text(stored: str | None) -> str | None:
    """SQLite's stored text as ``iso(datetime)`` writes it: ``T``, the fraction only when not zero
    (as ``datetime.isoformat``), ``Z``."""
    if not stored:
        return None
    whole, _, fraction = stored.partition(".")
    text = whole.replace(" ", "T", 1)
    if fraction.strip("0"):
        text += "." + fraction
    return text + "Z"


def _public_sqlite(
    uuid: str,
    vm_id: int,
    node: str,
    snapname: str,
    kind: str,
    status: str,
    reason: str | None,
    created_at: str,
    completed_at: str | None,
    error: str | None,
    protected: bool,
    upid: str | None,
    label: str | None,
    vmstate: bool | None,
    blessed_at: str | None,
    bless_refused: str | None,
) -> dict[str, Any]:
    doc = _public(
        uuid,
        vm_id,
        node,
        snapname,
        kind,
        status,
        reason,
        None,
        None,
        error,
        protected,
        upid,
        label,
        vmstate,
        None,
        bless_refused,
    )
    doc["created_at"] = _iso_text(created_at)
    doc["completed_at"] = _iso_text(completed_at)
    doc["blessed"] = blessed_at is not None
    doc["blessed_at"] = _iso_text(blessed_at)
    return doc


_KINDS = frozenset(kind.value for kind in CheckpointKind)


def _public(
    uuid: str,
    vm_id: int,
    node: str,
    snapname: str,
    kind: str,
    status: str,
    reason: str | None,
    created_at: datetime | None,
    completed_at: datetime | None,
    error: str | None,
    protected: bool,
    upid: str | None,
    label: str | None,
    vmstate: bool | None,
    blessed_at: datetime | None,
    bless_refused: str | None,
) -> dict[str, Any]:
    # As CheckpointRecord.of + to_public: a kind this runtime does not know reads as 'imported', a
    # row without a label is in its kind's pool, and a status must be one of ours.
    kind = kind if kind in _KINDS else CheckpointKind.IMPORTED.value
    return {
        "uuid": uuid,
        "vm_id": vm_id,
        "node": node,
        "snapname": snapname,
        "kind": kind,
        "status": CheckpointStatus(status).value,
        "reason": reason,
        "created_at": iso(created_at),
        "completed_at": iso(completed_at),
        "error": error,
        "protected": protected,
        "upid": upid,
        "label": label or kind,
        "vmstate": bool(vmstate),
        "blessed": blessed_at is not None,
        "blessed_at": iso(blessed_at),
        "bless_refused": bless_refused,
    }


def _filters(*, status: CheckpointStatus | None, vmid: int | None) -> list[ColumnElement[bool]]:
    where: list[ColumnElement[bool]] = []
    if status is not None:
        where.append(Checkpoint.status == status.value)
    if vmid is not None:
        where.append(Checkpoint.vm_id == vmid)
    return where


def _newest_first(where: list[ColumnElement[bool]]) -> Select[Checkpoint]:
    return select(Checkpoint).where(*where).order_by(Checkpoint.created_at.desc(), Checkpoint.uuid)
