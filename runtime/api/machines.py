"""``/api/v1/machines``: task machines over HTTP.

A create reserves the capacity in the request itself, so a quota or budget refusal is the answer
(409, ``{"error": "quota_exceeded", "detail": ...}``) with no job queued and no Proxmox call made,
and two calls racing for the last slot get one 202 and one 409. The Proxmox work (clone, configure,
start) is then the ``machine.build`` job (202 with its ``Location``). Start, stop, snapshot and
destroy are jobs too; reads answer from the database.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response, status
from pydantic import BaseModel, ConfigDict

from runtime.api.deps import API, BUSY, ERRORS, NOT_FOUND, Caller, QueueDep, ServicesDep, accepted
from runtime.machines.jobs import CreateParams
from runtime.machines.lifecycle import MachineService, resolve
from runtime.machines.queries import list_machines

router = APIRouter(prefix=API, tags=["machines"])


class SnapshotBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = None


@router.get("/machines", responses=ERRORS)
def list_(_: Caller, services: ServicesDep, project: str | None = None) -> dict[str, Any]:
    return {"machines": [m.to_public() for m in list_machines(services.ready_db(), project=project)]}


@router.get("/machines/{machine}", responses=NOT_FOUND)
def show(_: Caller, services: ServicesDep, machine: str) -> dict[str, Any]:
    return resolve(services.ready_db(), machine).to_public()


@router.post("/machines", status_code=status.HTTP_202_ACCEPTED, responses=BUSY)
def create(
    actor: Caller, services: ServicesDep, queue: QueueDep, body: CreateParams, response: Response
) -> dict[str, Any]:
    svc = MachineService.build_from(services, actor=actor)
    machine = svc.reserve(**body.model_dump())
    job = accepted(queue, response, "machine.build", {"uuid": machine.uuid}, actor)
    return {"machine": machine.to_public(), "job": job}


def _job(
    kind: str,
    services: ServicesDep,
    queue: QueueDep,
    actor: str,
    machine: str,
    response: Response,
    **extra: Any,
) -> dict[str, Any]:
    record = resolve(services.ready_db(), machine)  # unknown: 404 now, not a failed job later
    return accepted(queue, response, kind, {"machine": record.uuid, **extra}, actor)


@router.post("/machines/{machine}/start", status_code=status.HTTP_202_ACCEPTED, responses=NOT_FOUND)
def start(
    actor: Caller, services: ServicesDep, queue: QueueDep, machine: str, response: Response
) -> dict[str, Any]:
    return _job("machine.start", services, queue, actor, machine, response)


@router.post("/machines/{machine}/stop", status_code=status.HTTP_202_ACCEPTED, responses=NOT_FOUND)
def stop(
    actor: Caller, services: ServicesDep, queue: QueueDep, machine: str, response: Response
) -> dict[str, Any]:
    return _job("machine.stop", services, queue, actor, machine, response)


@router.post("/machines/{machine}/snapshot", status_code=status.HTTP_202_ACCEPTED, responses=NOT_FOUND)
def snapshot(
    actor: Caller,
    services: ServicesDep,
    queue: QueueDep,
    machine: str,
    response: Response,
    body: SnapshotBody | None = None,
) -> dict[str, Any]:
    extra = {"reason": body.reason} if body is not None and body.reason is not None else {}
    return _job("machine.snapshot", services, queue, actor, machine, response, **extra)


@router.delete("/machines/{machine}", status_code=status.HTTP_202_ACCEPTED, responses=NOT_FOUND)
def destroy(
    actor: Caller, services: ServicesDep, queue: QueueDep, machine: str, response: Response
) -> dict[str, Any]:
    return _job("machine.destroy", services, queue, actor, machine, response)
