"""What each job kind does. One function per kind, all built on the Hub's services.

Every handler is safe to run again after a crash: the services it calls are idempotent and the
claim in JobStore makes a job run at most once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

from runtime.checkpoints.service import CheckpointService
from runtime.db import CheckpointKind
from runtime.errors import UsageError
from runtime.wiring import Hub

Progress = Callable[[str], None]


def _service(hub: Hub, progress: Progress, actor: str) -> CheckpointService:
    return hub.checkpoint_service(progress=progress, actor=actor)


def checkpoint_create(hub: Hub, params: dict[str, Any], progress: Progress, actor: str) -> dict[str, Any]:
    svc = _service(hub, progress, actor)
    return svc.create(
        kind=CheckpointKind(params.get("kind", "manual")),
        reason=params.get("reason"),
        vmid=params.get("vmid"),
    )


def checkpoint_delete(hub: Hub, params: dict[str, Any], progress: Progress, actor: str) -> dict[str, Any]:
    return _service(hub, progress, actor).delete(params["uuid"])


def checkpoint_prune(hub: Hub, params: dict[str, Any], progress: Progress, actor: str) -> dict[str, Any]:
    svc = _service(hub, progress, actor)
    pruned = svc.prune(vmid=params.get("vmid"), dry_run=bool(params.get("dry_run")))
    return {"dry_run": bool(params.get("dry_run")), "policy": asdict(svc.policy()), "pruned": pruned}


def reconcile(hub: Hub, params: dict[str, Any], progress: Progress, actor: str) -> dict[str, Any]:
    return hub.reconciler_for(actor=actor).run(vmid=params.get("vmid")).to_public()


HANDLERS: dict[str, Callable[[Hub, dict[str, Any], Progress, str], dict[str, Any]]] = {
    "checkpoint.create": checkpoint_create,
    "checkpoint.delete": checkpoint_delete,
    "checkpoint.prune": checkpoint_prune,
    "reconcile": reconcile,
}


def handler_for(kind: str) -> Callable[[Hub, dict[str, Any], Progress, str], dict[str, Any]]:
    try:
        return HANDLERS[kind]
    except KeyError:
        raise UsageError(f"unknown job kind {kind!r}") from None
