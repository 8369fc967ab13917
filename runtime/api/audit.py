"""``/api/v1/audit``: the audit trail, newest first."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from runtime import audit
from runtime.api.deps import API, ERRORS, Caller, Limit, Offset, ServicesDep
from runtime.api.schemas import AuditPage

router = APIRouter(prefix=API, tags=["audit"])


@router.get("/audit", response_model=AuditPage, responses=ERRORS)
def list_audit(
    _: Caller,
    services: ServicesDep,
    limit: Limit = 50,
    offset: Offset = 0,
    target: Annotated[str | None, Query(max_length=256)] = None,
) -> dict[str, Any]:
    with services.ready_db().session() as s:
        items, total = audit.page(s, target=target, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}
