"""``/api/v1/checkpoints`` and ``/api/v1/reconcile``: the checkpoint domain over HTTP.

Reads answer from the database. A change that touches a snapshot (create, delete, prune) is a job
(202 with the job and its ``Location``), so a slow Proxmox never holds an HTTP request open. Two
answers are synchronous on purpose:

- protect/unprotect: one metadata write (the snapshot's description, then the row), quick, and the
  caller wants to know at once that the checkpoint is safe from retention. It waits for the VM's
  lock like any change (at most ``HUB_LOCK_WAIT_SECONDS``, then 409); the answer is the checkpoint.
- the prune preview: the retention decision over the database, nothing changed; what ``POST
  /checkpoints/prune`` would remove now, and what it keeps and by which rule (as PBS's dry run).

Input is checked here, before any job exists: ``vm_id`` is a JSON integer naming a VM the cluster
lists (404 otherwise), and ``kind`` is one a person may ask for (``scheduled`` is the scheduler's).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response, status

from runtime.api.deps import (
    API,
    BUSY,
    ERRORS,
    NOT_FOUND,
    UPSTREAM,
    Caller,
    Limit,
    Offset,
    QueueDep,
    ServicesDep,
    VmIdQuery,
    accepted,
    canonical_uuid,
    quick_read,
)
from runtime.api.responses import JsonBody
from runtime.api.schemas import (
    CheckpointCreate,
    CheckpointPage,
    CheckpointPublic,
    JobPublic,
    PrunePreview,
    PruneRequest,
)
from runtime.checkpoints.queries import CheckpointQueries
from runtime.checkpoints.records import CheckpointStatus
from runtime.checkpoints.service import CheckpointService
from runtime.wiring import Services

router = APIRouter(prefix=API, tags=["checkpoints"])


@router.get("/checkpoints", response_model=CheckpointPage, responses=ERRORS)
async def list_checkpoints(
    _: Caller,
    request: Request,
    vm_id: VmIdQuery,
    limit: Limit = 50,
    offset: Offset = 0,
    status_: Annotated[CheckpointStatus | None, Query(alias="status")] = None,
) -> Response:
    # The hot read (issue 9): rows straight into the public shape, and the document encoded here.
    # Returning a Response skips FastAPI's validation of 50 items against ``CheckpointPage`` (still
    # the documented schema; tests check the answer against it) and its generic encoder.
    # ``async`` with the read through ``quick_read``: no thread-pool hop on the embedded SQLite.
    db = request.app.state.services.db  # not ServicesDep: one dependency fewer to solve on the hot path
    queries = CheckpointQueries(db)
    items, total = await quick_read(
        db,
        lambda: queries.page_public(status=status_, vmid=vm_id, limit=limit, offset=offset),
    )
    return JsonBody({"items": items, "total": total, "limit": limit, "offset": offset})


# Before ``/checkpoints/{uuid}``: routes match in order, and this path would otherwise be a uuid.
@router.get(
    "/checkpoints/prune-preview",
    response_model=PrunePreview,
    responses=ERRORS,
    summary="What a prune would remove now and what it keeps, each with its rule (nothing changes).",
)
def prune_preview(actor: Caller, services: ServicesDep, vm_id: VmIdQuery) -> dict[str, Any]:
    vmid = vm_id if vm_id is not None else services.settings.hub_vmid()
    svc = CheckpointService.build(services, actor=actor)
    # The same plan a prune job applies, every checkpoint with the rule that decided it.
    plan = [item.to_public() for item in svc.plan(vmid)]
    going = [item for item in plan if not item["keep"]]
    kept = [item for item in plan if item["keep"]]
    return {
        "vm_id": vmid,
        "policy": asdict(svc.policy()),
        "policies": svc.policies(),
        "prune": going,
        "keep": kept,
    }


@router.get("/checkpoints/{uuid}", response_model=CheckpointPublic, responses=NOT_FOUND)
def show_checkpoint(_: Caller, services: ServicesDep, uuid: str) -> dict[str, Any]:
    queries = CheckpointQueries(services.ready_db())
    return queries.show(canonical_uuid(uuid, what="checkpoint uuid")).to_public()


@router.post(
    "/checkpoints", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic, responses=UPSTREAM
)
def create_checkpoint(
    actor: Caller, services: ServicesDep, queue: QueueDep, body: CheckpointCreate, response: Response
) -> dict[str, Any]:
    if body.vm_id is not None:
        services.vms.locate(body.vm_id)  # an unknown VM is 404 now, not a failed job later
    params = {
        "kind": body.kind,
        "reason": body.reason,
        "vm_id": body.vm_id,
        "label": body.label,
        "vmstate": body.vmstate,
    }
    return accepted(
        queue, response, "checkpoint.create", {k: v for k, v in params.items() if v is not None}, actor
    )


@router.post(
    "/checkpoints/{uuid}/protect",
    response_model=CheckpointPublic,
    responses=BUSY,
    summary="Exempt a completed checkpoint from retention (synchronous; idempotent).",
)
def protect(actor: Caller, services: ServicesDep, uuid: str) -> dict[str, Any]:
    return _protect(services, actor, uuid, protected=True)


@router.post(
    "/checkpoints/{uuid}/unprotect",
    response_model=CheckpointPublic,
    responses=BUSY,
    summary="Make a checkpoint subject to retention again (synchronous; idempotent).",
)
def unprotect(actor: Caller, services: ServicesDep, uuid: str) -> dict[str, Any]:
    return _protect(services, actor, uuid, protected=False)


def _protect(services: Services, actor: str, uuid: str, *, protected: bool) -> dict[str, Any]:
    svc = CheckpointService.build(services, actor=actor)
    return svc.protect(canonical_uuid(uuid, what="checkpoint uuid"), protected=protected).to_public()


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
    "/checkpoints/prune", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic, responses=UPSTREAM
)
def prune(
    actor: Caller, services: ServicesDep, queue: QueueDep, body: PruneRequest, response: Response
) -> dict[str, Any]:
    params: dict[str, Any] = {"dry_run": body.dry_run}
    if body.vm_id is not None:
        services.vms.locate(body.vm_id)  # as for create: an unknown VM is 404 now, not a failed job
        params["vm_id"] = body.vm_id
    return accepted(queue, response, "checkpoint.prune", params, actor)


@router.post("/reconcile", status_code=status.HTTP_202_ACCEPTED, response_model=JobPublic, responses=ERRORS)
def reconcile(actor: Caller, queue: QueueDep, response: Response) -> dict[str, Any]:
    return accepted(queue, response, "reconcile", {}, actor)
