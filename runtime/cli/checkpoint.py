"""``hubctl checkpoint ...``: create, list, show, delete, prune, schedule."""

from __future__ import annotations

import dataclasses
import signal
import threading
import uuid as uuidlib
from enum import StrEnum
from typing import Annotated

import typer

from runtime.checkpoints.schedule import CheckpointScheduler, next_fire
from runtime.cli import output
from runtime.cli.common import JsonOption, hub_from_settings
from runtime.db import CheckpointKind, CheckpointStatus
from runtime.errors import UsageError

app = typer.Typer(
    help="Checkpoints of the Hub VM (Proxmox snapshots tracked in the database).", no_args_is_help=True
)


class Kind(StrEnum):
    manual = "manual"
    scheduled = "scheduled"
    pre_operation = "pre-operation"
    emergency = "emergency"


class Status(StrEnum):
    creating = "creating"
    completed = "completed"
    failed = "failed"
    deleted = "deleted"


VmidOption = Annotated[int | None, typer.Option("--vmid", min=100, help="VM to act on (default HUB_VMID).")]


def _uuid(value: str) -> str:
    try:
        return str(uuidlib.UUID(value))
    except ValueError:
        raise UsageError(f"UUID: not a checkpoint uuid: {value!r}") from None


@app.command()
def create(
    kind: Annotated[Kind, typer.Option("--kind", help="Why this checkpoint is taken.")] = Kind.manual,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Free text kept with the checkpoint.")
    ] = None,
    vmid: VmidOption = None,
    json_output: JsonOption = False,
) -> None:
    """Run the checkpoint protocol: mark in the database, snapshot, verify, complete."""
    output.set_json(json_output)
    hub = hub_from_settings(progress=None if json_output else output.console.print)
    cp = hub.checkpoints.create(kind=CheckpointKind(kind.value), reason=reason, vmid=vmid)
    output.emit(cp, output.checkpoint_text(cp))


@app.command("list")
def list_(
    status: Annotated[Status | None, typer.Option("--status", help="Only checkpoints in this state.")] = None,
    vmid: VmidOption = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1)] = None,
    json_output: JsonOption = False,
) -> None:
    """Checkpoints, newest first."""
    output.set_json(json_output)
    hub = hub_from_settings()
    svc = hub.checkpoints_readonly()
    rows = svc.list(status=CheckpointStatus(status.value) if status else None, vmid=vmid, limit=limit)
    output.emit({"checkpoints": rows}, output.checkpoint_table(rows) if rows else "no checkpoints")


@app.command()
def show(
    uuid: Annotated[str, typer.Argument(help="Checkpoint uuid.")], json_output: JsonOption = False
) -> None:
    """One checkpoint."""
    output.set_json(json_output)
    cp = hub_from_settings().checkpoints_readonly().show(_uuid(uuid))
    output.emit(cp, output.checkpoint_text(cp))


@app.command()
def delete(
    uuid: Annotated[str, typer.Argument(help="Checkpoint uuid.")], json_output: JsonOption = False
) -> None:
    """Delete the checkpoint's snapshot on Proxmox and mark it deleted."""
    output.set_json(json_output)
    hub = hub_from_settings(progress=None if json_output else output.console.print)
    cp = hub.checkpoints.delete(_uuid(uuid))
    output.emit(cp, output.checkpoint_text(cp))


@app.command()
def protect(
    uuid: Annotated[str, typer.Argument(help="Checkpoint uuid.")], json_output: JsonOption = False
) -> None:
    """Exempt a checkpoint from retention (it is then never pruned)."""
    _set_protection(uuid, protected=True, json_output=json_output)


@app.command()
def unprotect(
    uuid: Annotated[str, typer.Argument(help="Checkpoint uuid.")], json_output: JsonOption = False
) -> None:
    """Make a protected checkpoint subject to retention again."""
    _set_protection(uuid, protected=False, json_output=json_output)


def _set_protection(uuid: str, *, protected: bool, json_output: bool) -> None:
    output.set_json(json_output)
    cp = hub_from_settings().checkpoints.protect(_uuid(uuid), protected=protected)
    output.emit(cp, output.checkpoint_text(cp))


@app.command()
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be pruned.")] = False,
    vmid: VmidOption = None,
    json_output: JsonOption = False,
) -> None:
    """Apply the retention policy (keep-last/hourly/daily/weekly/monthly); list what went."""
    output.set_json(json_output)
    hub = hub_from_settings(progress=None if json_output else output.console.print)
    gone = hub.checkpoints.prune(vmid=vmid, dry_run=dry_run)
    verb = "would prune" if dry_run else "pruned"
    policy = hub.checkpoints.policy()
    output.emit(
        {"dry_run": dry_run, "policy": dataclasses.asdict(policy), "pruned": gone},
        output.checkpoint_table(gone, title=f"{verb} {len(gone)} checkpoint(s)")
        if gone
        else f"{verb} nothing",
    )


@app.command()
def schedule(
    show_only: Annotated[
        bool, typer.Option("--show", help="Print the schedule and next fire time, then exit.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Run scheduled checkpoints in the foreground (the service embeds the same scheduler)."""
    output.set_json(json_output)
    hub = hub_from_settings(progress=output.console.print)
    from datetime import UTC, datetime

    now = datetime.now(UTC)
    upcoming = next_fire(hub.settings, after=now)
    doc = {"schedule": hub.settings.effective_schedule, "next": upcoming.isoformat() if upcoming else None}
    if show_only or upcoming is None:
        output.emit(doc, f"schedule {doc['schedule']} (UTC); next: {doc['next'] or 'never (manual)'}")
        return
    svc = hub.checkpoints
    # A scheduler is a long-running Hub process: start from a database that agrees with Proxmox.
    report = hub.reconciler.run()
    if report.changes:
        output.console.print(f"reconciled {len(report.changes)} checkpoint(s) at start")
    scheduler = CheckpointScheduler(
        settings=hub.settings,
        db=hub.db,
        job=lambda: svc.create(kind=CheckpointKind.SCHEDULED, reason="schedule"),
    )
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    caught_up = scheduler.start()
    output.console.print(
        f"schedule {doc['schedule']} (UTC); next {scheduler.next_run()}"
        + ("; catching up one missed run now" if caught_up else "")
    )
    stop.wait()
    scheduler.shutdown(wait=True)
