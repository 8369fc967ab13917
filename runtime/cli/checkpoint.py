"""``hubctl checkpoint ...``: create, list, show, delete, protect, prune, schedule."""

from __future__ import annotations

import dataclasses
import signal
import threading
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated

import typer

from runtime.checkpoints.records import CheckpointKind, CheckpointStatus
from runtime.cli import output, process
from runtime.cli.common import (
    JsonOption,
    VmidOption,
    database_from_settings,
    examples,
    progress_printer,
    progress_shown,
    services_from_settings,
)
from runtime.cli.listing import DEFAULT_LIMIT
from runtime.errors import NotFoundError, UsageError

if TYPE_CHECKING:
    from runtime.checkpoints.records import CheckpointRecord
    from runtime.db import Database

app = typer.Typer(
    help="Checkpoints of the Hub VM (Proxmox snapshots tracked in the database).",
    no_args_is_help=True,
    epilog=examples(
        "hubctl checkpoint create --reason 'before upgrade'",
        "hubctl checkpoint list",
        "hubctl checkpoint show 3f2a",
        "hubctl checkpoint prune --dry-run",
    ),
)
UuidArgument = Annotated[
    str,
    typer.Argument(
        metavar="CHECKPOINT",
        help="Checkpoint: full uuid, a unique prefix (4+ hex digits) or snapshot name (hub-...).",
    ),
]


def _resolve(db: Database, ref: str) -> CheckpointRecord:
    """The checkpoint ``ref`` names (uuid, unique prefix or snapshot name); bad usage names the argument."""
    from runtime.checkpoints.queries import CheckpointQueries

    try:
        return CheckpointQueries(db).resolve(ref)
    except NotFoundError:
        raise
    except UsageError as exc:
        raise UsageError(f"CHECKPOINT: {exc}") from None


@app.command(epilog=examples("hubctl checkpoint create --kind pre-operation --reason 'kernel update'"))
def create(
    kind: Annotated[
        CheckpointKind,
        typer.Option(
            "--kind",
            metavar="KIND",
            help="Why this checkpoint is taken: manual, scheduled, pre-operation or emergency"
            " ('imported' is reserved).",
        ),
    ] = CheckpointKind.MANUAL,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Free text kept with the checkpoint.")
    ] = None,
    vmid: VmidOption = None,
    label: Annotated[
        str | None,
        typer.Option("--label", help="Retention pool (default: the kind), as cv4pve-autosnap's --label."),
    ] = None,
    vmstate: Annotated[
        bool | None,
        typer.Option("--vmstate/--no-vmstate", help="Save the VM's RAM too (a rollback resumes it)."),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Run the checkpoint protocol: mark in the database, snapshot, verify, complete."""
    from runtime.checkpoints.service import CheckpointService
    from runtime.settings import LABEL

    if label is not None and not LABEL.fullmatch(label):
        raise UsageError("--label: lowercase letters, digits and '-', starting with a letter, at most 32")

    output.set_json(json_output)
    services = services_from_settings()
    with progress_shown(json_output, services, then="the snapshot") as progress:
        svc = CheckpointService.build(services, actor="hubctl", progress=progress)
        cp = svc.create(kind=kind, reason=reason, vmid=vmid, label=label, vmstate=vmstate).to_public()
    output.emit(cp, output.checkpoint_text(cp))


@app.command("list")
def list_(
    status: Annotated[
        CheckpointStatus | None,
        typer.Option(
            "--status",
            metavar="STATUS",
            help="Only checkpoints in this state: creating, completed, failed or deleted.",
        ),
    ] = None,
    vmid: VmidOption = None,
    limit: Annotated[
        int | None,
        typer.Option(
            "--limit",
            min=1,
            max=1_000_000,
            help=f"At most this many (text output shows {DEFAULT_LIMIT} unless told; --json shows all).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Checkpoints, newest first."""
    from runtime.checkpoints.queries import CheckpointQueries

    output.set_json(json_output)
    queries = CheckpointQueries(database_from_settings())
    if json_output:
        rows = [cp.to_public() for cp in queries.list(status=status, vmid=vmid, limit=limit)]
        output.emit({"checkpoints": rows})
        return
    # Text is read by a person: a page and the count, not 10,000 lines (see listing.py).
    page, total = queries.page(status=status, vmid=vmid, limit=limit or DEFAULT_LIMIT)
    rows = [cp.to_public() for cp in page]
    output.emit(
        {"checkpoints": rows},
        output.checkpoint_listing(rows, title="checkpoints", total=total, more="--limit N or --json for all")
        if rows
        else "no checkpoints",
    )


@app.command(epilog=examples("hubctl checkpoint show 3f2a", "hubctl checkpoint show hub-<32 hex digits>"))
def show(uuid: UuidArgument, json_output: JsonOption = False) -> None:
    """One checkpoint."""
    output.set_json(json_output)
    cp = _resolve(database_from_settings(), uuid).to_public()
    output.emit(cp, output.checkpoint_text(cp))


@app.command()
def delete(uuid: UuidArgument, json_output: JsonOption = False) -> None:
    """Delete the checkpoint's snapshot on Proxmox and mark it deleted."""
    from runtime.checkpoints.service import CheckpointService

    output.set_json(json_output)
    services = services_from_settings()
    target = _resolve(services.ready_db(), uuid).uuid
    with progress_shown(json_output, services, then=f"deleting {target[:8]}") as progress:
        svc = CheckpointService.build(services, actor="hubctl", progress=progress)
        cp = svc.delete(target).to_public()
    output.emit(cp, output.checkpoint_text(cp))


@app.command()
def protect(uuid: UuidArgument, json_output: JsonOption = False) -> None:
    """Exempt a checkpoint from retention (it is then never pruned)."""
    _set_protection(uuid, protected=True, json_output=json_output)


@app.command()
def unprotect(uuid: UuidArgument, json_output: JsonOption = False) -> None:
    """Make a protected checkpoint subject to retention again."""
    _set_protection(uuid, protected=False, json_output=json_output)


def _set_protection(uuid: str, *, protected: bool, json_output: bool) -> None:
    from runtime.checkpoints.service import CheckpointService

    output.set_json(json_output)
    services = services_from_settings()
    target = _resolve(services.ready_db(), uuid).uuid
    svc = CheckpointService.build(services, actor="hubctl")
    cp = svc.protect(target, protected=protected).to_public()
    output.emit(cp, output.checkpoint_text(cp))


@app.command()
def prune(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only list what would be pruned.")] = False,
    vmid: VmidOption = None,
    json_output: JsonOption = False,
) -> None:
    """Apply the retention policy (keep-last/hourly/daily/weekly/monthly); list what went."""
    from runtime.checkpoints.service import CheckpointService

    output.set_json(json_output)
    services = services_from_settings()
    with progress_shown(json_output, services, then="the retention policy") as progress:
        svc = CheckpointService.build(services, actor="hubctl", progress=progress)
        document: dict[str, object] = {"dry_run": dry_run, "policy": dataclasses.asdict(svc.policy())}
        document["policies"] = svc.policies()
        kept: list[dict[str, object]] = []
        if dry_run:  # as PBS's dry run: what would go, and what stays by which rule
            plan = [
                item.to_public() for item in svc.plan(vmid if vmid is not None else svc.settings.hub_vmid())
            ]
            gone = [item for item in plan if not item["keep"]]
            kept = [item for item in plan if item["keep"]]
            document["kept"] = kept
        else:
            gone = [item.to_public() for item in svc.prune(vmid=vmid)]
        document["pruned"] = gone
    verb = "would prune" if dry_run else "pruned"
    text = f"{verb} nothing"
    if gone:
        title = f"{verb} {len(gone)} checkpoint(s)"
        text = output.checkpoint_listing(gone[:DEFAULT_LIMIT], title=title, total=len(gone)).render()
    if dry_run:
        rules: dict[str, int] = {}
        for item in kept:
            key = f"{item['label']}: {item['rule']}"
            rules[key] = rules.get(key, 0) + 1
        text += f"\nwould keep {len(kept)}"
        text += "".join(f"\n  {n:>4}  {rule}" for rule, n in sorted(rules.items()))
    output.emit(document, text)


@app.command()
def schedule(
    show_only: Annotated[
        bool, typer.Option("--show", help="Print the schedule and next fire time, then exit.")
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Run scheduled checkpoints in the foreground (the service embeds the same scheduler)."""
    from runtime.checkpoints.reconcile import Reconciler
    from runtime.checkpoints.schedule import CheckpointScheduler, next_fire
    from runtime.checkpoints.service import CheckpointService

    output.set_json(json_output)
    services = services_from_settings()
    settings = services.settings
    upcoming = next_fire(settings, after=datetime.now(UTC))
    doc = {"schedule": settings.effective_schedule, "next": upcoming.isoformat() if upcoming else None}
    if show_only or upcoming is None:
        output.emit(doc, f"schedule {doc['schedule']} (UTC); next: {doc['next'] or 'never (manual)'}")
        return
    process.long_running()
    svc = CheckpointService.build(services, actor="scheduler", progress=progress_printer(False))
    # A scheduler is a long-running Hub process: start from a database that agrees with Proxmox.
    report = Reconciler.build(services, actor="scheduler").run()
    if report.changes:
        output.console.print(f"reconciled {len(report.changes)} checkpoint(s) at start")
    scheduler = CheckpointScheduler(
        settings=settings,
        db=services.db,
        vmid=settings.hub_vmid(),
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
