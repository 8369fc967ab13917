"""The audit trail: every Hub action, who asked for it, and how it ended.

Rows are only ever inserted (the database refuses anything else). Details are scrubbed of anything
that looks like a secret before they are written, so the trail can be shown to any operator.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from runtime.db.models import AuditEntry

_SECRET_KEY = re.compile(r"token|secret|password|passwd|authorization|api_key|credential", re.IGNORECASE)
_TOKEN_VALUE = re.compile(r"(PVEAPIToken=\S+?=)\S+|(![\w.-]+=)[0-9a-fA-F-]{8,}")
REDACTED = "[redacted]"


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str | None,
    outcome: str,
    details: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> AuditEntry:
    entry = AuditEntry(
        at=at or datetime.now(UTC),
        actor=actor,
        action=action,
        target=target,
        outcome=outcome,
        details=scrub(details or {}),
    )
    session.add(entry)
    session.flush()
    return entry


def page(
    session: Session, *, target: str | None = None, limit: int = 100, offset: int = 0
) -> tuple[list[dict[str, Any]], int]:
    """Newest first, one page and the total (optionally for one target)."""
    where = [AuditEntry.target == target] if target is not None else []
    query = select(AuditEntry).where(*where).order_by(AuditEntry.id.desc()).limit(limit).offset(offset)
    total = int(session.scalar(select(func.count()).select_from(AuditEntry).where(*where)) or 0)
    return [e.to_public() for e in session.scalars(query)], total


def scrub(value: Any) -> Any:
    if isinstance(value, dict):
        mapping = cast(dict[Any, Any], value)
        return {str(k): (REDACTED if _SECRET_KEY.search(str(k)) else scrub(v)) for k, v in mapping.items()}
    if isinstance(value, list | tuple):
        return [scrub(v) for v in cast(list[Any], value)]
    if isinstance(value, str):
        return _TOKEN_VALUE.sub(lambda m: (m.group(1) or m.group(2)) + REDACTED, value)
    if value is None or isinstance(value, bool | int | float):
        return value
    return str(value)
