"""``hubctl fleet ...``: operations over many of the Hub's VMs at once."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runtime.checkpoints.records import CheckpointKind
from runtime.cli import output
from runtime.cli.common import JsonOption, examples, services_from_settings
from runtime.errors import UsageError

if TYPE_CHECKING:
    from runtime.fleet.records import Outcome, Target

app = typer.Typer(
    help="Many of the Hub's VMs at once (checkpoint a project, a tag, or every owned VM).",
    no_args_is_help=True,
    epilog=examples(
        "hubctl fleet checkpoint --project ci",
        "hubctl fleet checkpoint --all --max-parallel 16 --per-node 4 --json",
    ),
)


@app.callback()
def _fleet() -> None:
    """Many of the Hub's VMs at once (a group, so `hubctl fleet checkpoint` keeps its name)."""


# The defaults live with the runner (runtime.fleet.runner); repeated here so --help needs no import.
DEFAULT_MAX_PARALLEL = 8
DEFAULT_PER_NODE = 4


@app.command(
    epilog=examples(
        "hubctl fleet checkpoint --project ci --label nightly",
        "hubctl fleet checkpoint --tag gpu --per-node 1",
        "hubctl fleet checkpoint --all --json | jq '.results[] | select(.status != \"completed\")'",
    )
)
def checkpoint(
    project: Annotated[
        str | None,
        typer.Option("--project", help="The project's machines (owned VMs tagged hub-project-<P>)."),
    ] = None,
    tag: Annotated[str | None, typer.Option("--tag", help="The owned VMs carrying this Proxmox tag.")] = None,
    all_vms: Annotated[
        bool, typer.Option("--all", help="Every VM the Hub owns (its own and its machines in HUB_POOL).")
    ] = False,
    max_parallel: Annotated[
        int, typer.Option("--max-parallel", help="At most this many checkpoints at once, overall.")
    ] = DEFAULT_MAX_PARALLEL,
    per_node: Annotated[
        int, typer.Option("--per-node", help="At most this many checkpoints at once on any one node.")
    ] = DEFAULT_PER_NODE,
    kind: Annotated[
        CheckpointKind,
        typer.Option(
            "--kind",
            metavar="KIND",
            help="Why: manual, scheduled, pre-operation or emergency ('imported' is reserved).",
        ),
    ] = CheckpointKind.MANUAL,
    label: Annotated[
        str | None,
        typer.Option("--label", help="Retention pool on each VM (default: the kind), as cv4pve-autosnap's."),
    ] = None,
    vmstate: Annotated[
        bool | None,
        typer.Option("--vmstate/--no-vmstate", help="Save each VM's RAM too (a rollback resumes it)."),
    ] = None,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Free text kept with each checkpoint.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Checkpoint many VMs, bounded per node and overall; one VM's failure never stops the rest.

    Each VM gets the same checkpoint as `hubctl checkpoint create --vmid` (its lock, the three-step
    protocol, retention by label). Exit 1 when any VM was not checkpointed; the summary says which.
    """
    from runtime.fleet.records import Selector
    from runtime.fleet.runner import FleetRunner
    from runtime.settings import LABEL

    output.set_json(json_output)
    selector = Selector.of(project=project, tag=tag, all_vms=all_vms)
    if label is not None and not LABEL.fullmatch(label):
        raise UsageError("--label: lowercase letters, digits and '-', starting with a letter, at most 32")
    services = services_from_settings()
    runner = FleetRunner.build(services, actor="hubctl")
    with _Display(json_output) as display:
        report = runner.checkpoint(
            selector,
            max_parallel=max_parallel,
            per_node=per_node,
            kind=kind,
            label=label,
            vmstate=vmstate,
            reason=reason,
            events=display,
        )
    doc = report.to_public()
    output.emit(doc, _summary(doc, selector.describe(), pool=services.settings.pool))
    if report.failed:
        raise typer.Exit(1)


def _summary(doc: dict[str, Any], what: str, *, pool: str | None) -> str:
    if doc["total"] == 0:
        why = "" if pool else " (HUB_POOL is unset, so the Hub owns no machine VM)"
        return f"no VM selected: {what} matched no VM the Hub owns{why}; nothing to do"
    lines = [
        f"  VM {r['vm_id']} on {r['node']}: {r['status']}: {r['error']}"
        for r in doc["results"]
        if r["status"] != "completed"
    ]
    lines.append(
        f"fleet checkpoint of {what}: {doc['completed']} of {doc['total']} VM(s) checkpointed, "
        f"{doc['failed']} not, in {doc['seconds']:.1f} s"
    )
    return "\n".join(lines)


class _Display:
    """On a terminal, a live progress bar (done/total, failures, in flight); without one, a line per
    finished VM; with --json, nothing (stdout carries exactly one document). Fed from worker threads."""

    def __init__(self, json_output: bool) -> None:
        self._console = None if json_output else output.console
        self._lock = threading.Lock()
        self._bar: Any = None
        self._task: Any = None
        self._failed = 0
        self._running = 0
        if self._console is not None and self._console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

            self._bar = Progress(
                TextColumn("checkpointing"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[detail]}"),
                TimeElapsedColumn(),
                console=self._console,
                transient=False,
            )

    # FleetEvents (duck-typed, so --help never imports the runner)
    def selected(self, targets: list[Target]) -> None:
        if self._bar is not None:
            self._task = self._bar.add_task("fleet", total=len(targets), detail=self._detail())
        elif self._console is not None and targets:
            self._console.print(f"{len(targets)} VM(s) selected", markup=False)

    def started(self, target: Target) -> None:
        with self._lock:
            self._running += 1
            self._update(advance=0)

    def finished(self, outcome: Outcome) -> None:
        with self._lock:
            self._running -= 1
            if outcome.status != "completed":
                self._failed += 1
            self._update(advance=1)
        if self._console is not None:
            line = f"VM {outcome.vm_id} on {outcome.node}: {outcome.status}"
            if outcome.error:
                line += f": {outcome.error}"
            if self._bar is not None and outcome.status == "completed":
                return  # the bar says it; only what went wrong gets a line above it
            self._console.print(line, markup=False)

    def _detail(self) -> str:
        return f"{self._failed} failed, {self._running} in flight"

    def _update(self, *, advance: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, advance=advance, detail=self._detail())

    def __enter__(self) -> _Display:
        if self._bar is not None:
            self._bar.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()
