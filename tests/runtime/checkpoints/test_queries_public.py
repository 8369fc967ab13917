"""The API's list read (``CheckpointQueries.page_public``) gives exactly what ``page`` +
``CheckpointRecord.to_public`` give, row for row, on both databases: the fast path is not a second
definition of the public shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from runtime.api.schemas import CheckpointPage
from runtime.checkpoints.queries import CheckpointQueries
from runtime.checkpoints.records import CheckpointStatus
from runtime.db import Checkpoint, Database
from runtime.db.models import new_uuid


@pytest.fixture
def db(database_url: str) -> Database:
    database = Database(database_url)
    database.upgrade()
    return database


def _rows(db: Database) -> None:
    start = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC)  # whole seconds: isoformat drops the fraction
    variants = [
        {
            "kind": "manual",
            "status": "completed",
            "label": "daily",
            "protected": True,
            "vmstate": True,
            "blessed": True,
        },
        {"kind": "scheduled", "status": "failed", "error": "boom", "label": None},
        {"kind": "from-a-newer-runtime", "status": "creating", "label": None, "upid": "UPID:pve1:1:2:3"},
        {"kind": "pre-operation", "status": "deleted", "reason": "before upgrade", "label": "pre-operation"},
        {
            "kind": "emergency",
            "status": "completed",
            "reason": "ünïcödé ✓",
            "label": None,
            "bless_refused": "taken while degraded",
        },
    ]
    with db.session() as s:
        for i in range(25):
            v = variants[i % len(variants)]
            created = start - timedelta(hours=i, microseconds=0 if i % 2 else 123456)
            s.add(
                Checkpoint(
                    uuid=new_uuid(),
                    vm_id=100 if i % 3 else 4242,
                    node="pve1",
                    snapname=f"hub-{i:032x}",
                    kind=v["kind"],
                    status=v["status"],
                    reason=v.get("reason"),
                    upid=v.get("upid"),
                    error=v.get("error"),
                    created_at=created,
                    completed_at=created + timedelta(seconds=4) if v["status"] == "completed" else None,
                    protected=bool(v.get("protected")),
                    label=v.get("label"),
                    vmstate=bool(v.get("vmstate")),
                    blessed_at=created + timedelta(hours=1, microseconds=7) if v.get("blessed") else None,
                    bless_refused=v.get("bless_refused"),
                )
            )
        # An empty label (not NULL) reads as the kind's pool too.
        s.flush()
    with db.session() as s:
        s.execute(update(Checkpoint).where(Checkpoint.snapname == f"hub-{7:032x}").values(label=""))


@pytest.mark.parametrize(
    ("status", "vmid", "limit", "offset"),
    [
        (None, None, 50, 0),
        (None, None, 7, 3),
        (CheckpointStatus.COMPLETED, None, 50, 0),
        (None, 4242, 50, 0),
        (CheckpointStatus.FAILED, 100, 2, 1),
        (None, 999, 50, 0),
        (None, None, 10, 40),
    ],
)
def test_page_public_is_page_then_to_public(
    db: Database, status: CheckpointStatus | None, vmid: int | None, limit: int, offset: int
) -> None:
    _rows(db)
    queries = CheckpointQueries(db)
    records, total = queries.page(status=status, vmid=vmid, limit=limit, offset=offset)
    public, public_total = queries.page_public(status=status, vmid=vmid, limit=limit, offset=offset)
    assert public_total == total
    assert public == [record.to_public() for record in records]
    # And it is the documented response schema.
    CheckpointPage.model_validate({"items": public, "total": total, "limit": limit, "offset": offset})
