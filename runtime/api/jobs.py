"""``/api/v1/jobs``: every long operation, whatever domain queued it."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query

from runtime.api.deps import API, ERRORS, NOT_FOUND, Caller, Limit, Offset, QueueDep, canonical_uuid
from runtime.api.schemas import JobPage, JobPublic
from runtime.db import JobState

router = APIRouter(prefix=API, tags=["jobs"])


@router.get("/jobs", response_model=JobPage, responses=ERRORS)
def list_jobs(
    _: Caller,
    queue: QueueDep,
    limit: Limit = 50,
    offset: Offset = 0,
    state: Annotated[JobState | None, Query()] = None,
) -> dict[str, Any]:
    items, total = queue.store.page(state=state, limit=limit, offset=offset)
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/jobs/{job_id}", response_model=JobPublic, responses=NOT_FOUND)
def show_job(_: Caller, queue: QueueDep, job_id: str) -> dict[str, Any]:
    return queue.store.get(canonical_uuid(job_id, what="job id"))
