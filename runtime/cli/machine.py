"""``hubctl machine ...``: task machines (create, list, show, start, stop, snapshot, destroy, sync)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from runtime.cli import output
from runtime.cli.common import (
    JsonOption,
    database_from_settings,
    examples,
    progress_shown,
    services_from_settings,
)

if TYPE_CHECKING:
    from runtime.machines.lifecycle import MachineService
    from runtime.wiring import Services

app = typer.Typer(
    help="Task machines: VMs cloned from the Hub's template into its pool, per project.",
    no_args_is_help=True,
    epilog=examples(
        "hubctl machine create --project ci --name build-1 --cores 2 --memory-mib 2048",
        "hubctl machine list --project ci",
        "hubctl machine destroy build-1",
    ),
)
IdArgument = Annotated[
    str, typer.Argument(metavar="ID", help="Machine: its uuid, a unique prefix (4+ hex digits) or its name.")
]
ProjectOption = Annotated[str, typer.Option("--project", help="The project the machine belongs to.")]


def _text(m: dict[str, Any]) -> str:
    where = f"VM {m['vm_id']} on {m['node']}" if m.get("vm_id") else "no VM yet"
    line = (
        f"{m['name']}  {m['uuid']}  project {m['project']}  {m['status']}  {where}  "
        f"{m['cores']} cores, {m['memory_mib']} MiB, {m['disk_gb']} GiB"
    )
    if m.get("idle"):
        line += "  (idle)"
    if m.get("error"):
        line += f"\n  error: {m['error']}"
    return line


def _service(services: Services, progress: Any = None) -> MachineService:
    from runtime.machines.lifecycle import MachineService

    return MachineService.build_from(services, actor="hubctl", progress=progress or (lambda _m: None))


@app.command()
def create(
    project: ProjectOption,
    name: Annotated[str | None, typer.Option("--name", help="The machine's (and VM's) name; unique.")] = None,
    cores: Annotated[
        int | None, typer.Option("--cores", min=1, max=4096, help="vCPU cores (default 1).")
    ] = None,
    memory_mib: Annotated[
        int | None,
        typer.Option("--memory-mib", min=16, max=64 * 1024 * 1024, help="Memory in MiB (default 1024)."),
    ] = None,
    disk_gb: Annotated[
        int | None, typer.Option("--disk-gb", min=1, max=1_000_000, help="Boot disk in GiB (default 10).")
    ] = None,
    network: Annotated[
        str | None, typer.Option("--network", help="One of HUB_TASK_NETWORKS (default: the first).")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Reserve capacity (refused, naming the limit, before any Proxmox call), then clone, configure
    and start. Repeating a create with the same --name after a crash resumes it."""
    output.set_json(json_output)
    services = services_from_settings()
    with progress_shown(json_output, services, then="reserving capacity") as progress:
        svc = _service(services, progress)
        machine = svc.create(
            project=project, name=name, cores=cores, memory_mib=memory_mib, disk_gb=disk_gb, network=network
        ).to_public()
    output.emit(machine, _text(machine))


@app.command("list")
def list_(
    project: Annotated[str | None, typer.Option("--project", help="Only this project's machines.")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Destroyed machines too.")] = False,
    json_output: JsonOption = False,
) -> None:
    """Machines, newest first."""
    from runtime.machines.queries import list_machines

    output.set_json(json_output)
    rows = [m.to_public() for m in list_machines(database_from_settings(), project=project, destroyed=all_)]
    output.emit({"machines": rows}, "\n".join(_text(m) for m in rows) if rows else "no machines")


@app.command()
def show(machine: IdArgument, json_output: JsonOption = False) -> None:
    """One machine."""
    from runtime.machines.lifecycle import resolve

    output.set_json(json_output)
    m = resolve(database_from_settings(), machine).to_public()
    output.emit(m, _text(m))


def _act(machine: str, action: str, json_output: bool) -> None:
    output.set_json(json_output)
    services = services_from_settings()
    with progress_shown(json_output, services, then=action) as progress:
        svc = _service(services, progress)
        m = getattr(svc, action)(machine).to_public()
    output.emit(m, _text(m))


@app.command()
def start(machine: IdArgument, json_output: JsonOption = False) -> None:
    """Start the machine's VM (nothing to do when it runs)."""
    _act(machine, "start", json_output)


@app.command()
def stop(machine: IdArgument, json_output: JsonOption = False) -> None:
    """Shut the machine's VM down (ACPI, then a hard stop after the bound)."""
    _act(machine, "stop", json_output)


@app.command()
def destroy(machine: IdArgument, json_output: JsonOption = False) -> None:
    """Destroy the machine's VM and its disks, after checking the VM carries the Hub's marker."""
    _act(machine, "destroy", json_output)


@app.command()
def snapshot(
    machine: IdArgument,
    reason: Annotated[
        str | None, typer.Option("--reason", help="Free text kept with the checkpoint.")
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Checkpoint the machine's VM (the checkpoint protocol; the project's retention applies)."""
    output.set_json(json_output)
    services = services_from_settings()
    with progress_shown(json_output, services, then="the snapshot") as progress:
        result = _service(services, progress).snapshot(machine, reason=reason)
    cp = result["checkpoint"]
    output.emit(
        result,
        f"machine {result['machine']['name']}: checkpoint {cp['uuid']} ({cp['snapname']}) {cp['status']}",
    )


@app.command()
def sync(json_output: JsonOption = False) -> None:
    """One cluster-sync pass now (the service runs it periodically)."""
    from runtime.machines.cluster_sync import sync_machines

    output.set_json(json_output)
    report = sync_machines(services_from_settings(), actor="hubctl").to_public()
    output.emit(report, "\n".join(f"{k}: {v}" for k, v in report.items()))
