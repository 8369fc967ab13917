"""``/api/v1/checkpoints`` and ``/api/v1/reconcile``: the checkpoint domain over HTTP.

Reads answer from the database; every change is a job (202 with the job and its ``Location``), so a
slow Proxmox never holds an HTTP request open.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Response, status

from runtime.api.deps import (
    API,
    ERRORS,
    NOT_FOUND,
    Caller,
    Limit,
    Offset,
    QueueDep,
    ServicesDep,
    accepted,
    canonical_uuid,
)
from runtime.api.schemas import CheckpointPage, CheckpointPublic, JobPublic, PruneRequest
from runtime.checkpoints.jobs import CreateParams
from runtime.checkpoints.queries import CheckpointQueries
from runtime.checkpoints.records import CheckpointStatus

router = APIRouter(prefix=API, tags=["checkpoints"])


@router.get("/checkpoints", response_model=CheckpointPage, responses=ERRORS)
def list_checkpoints(
    _: Caller,
    services: ServicesDep,
    limit: Limit = 50,
    offset: Offset = 0,
    status_: Annotated[CheckpointStatus | None, Query(alias="status")] = None,
    vmid: Annotated[int | None, Query(ge=100, le=999_999_999)] = None,
) -> dict[str, Any]:
    items, total = CheckpointQueries(services.ready_db()).page(
        status=status_, vmid=vmid, limit=limit, offset=offset
    )
    return {"items": [cp.to_public() for cp in items], "total": total, "limit": limit, "offset": offset}


@router.get("/checkpoints/{uuid}", response_model=CheckpointPublic, responses=NOT_FOUND)
def show_checkpoint(_: Caller, services: ServicesDep, uuid: str) -> dict[str, Any]:
    queries = CheckpointQueries(services.ready_db())
    return queries.show(canonical_uuid(uuid, what="checkpoint uuid")).to_public()


@router.post("/checkpoints", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic, responses=ERRORS)
def create_checkpoint(
    actor: Caller, queue: QueueDep, body: CreateParams, response: Response
) -> dict[str, Any]:
    return accepted(
        queue, response, "checkpoint.create", body.model_dump(mode="json", exclude_none=True), actor
    )


@router.delete(
    "/checkpoints/{uuid}", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic, responses=NOT_FOUND
)
def delete_checkpoint(
    actor: Caller, services: ServicesDep, queue: QueueDep, uuid: str, response: Response
) -> dict[str, Any]:
    # 404 now, not inside the job.
    cp = CheckpointQueries(services.ready_db()).show(canonical_uuid(uuid, what="checkpoint uuid"))
    return accepted(queue, response, "checkpoint.delete", {"uuid": cp.uuid}, actor)


@router.post(
    "/checkpoints/prune", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic, responses=ERRORS
)
def prune(actor: Caller, queue: QueueDep, body: PruneRequest, response: Response) -> dict[str, Any]:
    return accepted(queue, response, "checkpoint.prune", body.model_dump(), actor)


@router.post("/reconcile", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic, responses=ERRORS)
def reconcile(actor: Caller, queue: QueueDep, response: Response) -> dict[str, Any]:
    return accepted(queue, response, "reconcile", {}, actor)
