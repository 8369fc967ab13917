"""``/api/v1/fleet``: operations over many of the Hub's VMs at once.

A fleet checkpoint is a job (202 with the job and its ``Location``): it may run for minutes, and its
result carries each VM's outcome (``GET /api/v1/jobs/{id}``), the same JSON as ``hubctl fleet
checkpoint --json``. The body is the job's own parameters model, so what the API accepts is exactly
what the job runs; a body naming no selector, or two, is 422 and nothing is queued.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status

from runtime.api.deps import API, ERRORS, Caller, QueueDep, accepted
from runtime.api.schemas import JobPublic
from runtime.fleet.jobs import CheckpointParams

router = APIRouter(prefix=API, tags=["fleet"])


@router.post(
    "/fleet/checkpoints",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=JobPublic,
    responses=ERRORS,
    summary="Checkpoint the owned VMs of a project, with a tag, or all of them (a job).",
)
def fleet_checkpoint(
    actor: Caller, queue: QueueDep, body: CheckpointParams, response: Response
) -> dict[str, Any]:
    return accepted(
        queue, response, "fleet.checkpoint", body.model_dump(mode="json", exclude_none=True), actor
    )
