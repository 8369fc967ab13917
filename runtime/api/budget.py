"""``/api/v1/budget``: the budget report (the same document as ``hubctl budget show --json``)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter

from runtime.api.deps import API, NOT_FOUND, Caller, ServicesDep
from runtime.machines.budget import report
from runtime.machines.projects import ProjectStore

router = APIRouter(prefix=API, tags=["budget"])


@router.get("/budget", responses=NOT_FOUND)
def show(_: Caller, services: ServicesDep, project: str | None = None) -> dict[str, Any]:
    db = services.ready_db()
    if project is not None:
        ProjectStore(db).show(project)
    return report(db, services.settings, now=datetime.now(UTC), project=project)
