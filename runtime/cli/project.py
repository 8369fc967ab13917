"""``hubctl project ...``: projects own task machines and carry their limits and budget."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from runtime.cli import output
from runtime.cli.common import JsonOption, database_from_settings, examples
from runtime.errors import UsageError

app = typer.Typer(
    help="Projects: limits, cost budget and checkpoint schedule of task machines.",
    no_args_is_help=True,
    epilog=examples("hubctl project create ci --cores 8 --machines 4 --budget 100", "hubctl project show ci"),
)
NameArgument = Annotated[str, typer.Argument(metavar="NAME", help="Project name.")]
Cores = Annotated[int | None, typer.Option("--cores", min=0, max=1_000_000, help="Most cores at once.")]
Memory = Annotated[
    int | None, typer.Option("--memory-mib", min=0, max=1_000_000_000, help="Most memory (MiB).")
]
Disk = Annotated[int | None, typer.Option("--disk-gb", min=0, max=1_000_000_000, help="Most disk (GiB).")]
Machines = Annotated[
    int | None, typer.Option("--machines", min=0, max=1_000_000, help="Most machines at once.")
]
Budget = Annotated[
    float | None, typer.Option("--budget", min=0, max=1e12, help="Cost budget (HUB_COST_PER_* units).")
]
Schedule = Annotated[
    str | None,
    typer.Option(
        "--checkpoint-schedule", help="Cron (UTC) for fleet checkpoints of its machines, or 'manual'."
    ),
]
Retention = Annotated[
    str | None,
    typer.Option(
        "--retention", help="JSON keep-* rule for its machines' checkpoints, e.g. '{\"keep_last\": 5}'."
    ),
]


def _text(p: dict[str, Any]) -> str:
    limits = ", ".join(f"{k} {v}" for k, v in p["limits"].items() if v is not None) or "no limits"
    budget = "no budget" if p["budget"] is None else f"budget {p['budget']:g}, spent {p['spent']:.2f}"
    return f"{p['name']}: {limits}; {budget}; schedule {p['checkpoint_schedule'] or 'none'}"


def _retention(text: str | None) -> dict[str, Any] | None:
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        raise UsageError("--retention: not JSON (expected e.g. '{\"keep_last\": 5}')") from None
    if not isinstance(value, dict):
        raise UsageError("--retention: expected a JSON object of keep-* counts")
    return value  # pyright: ignore[reportUnknownVariableType]


@app.command()
def create(
    name: NameArgument,
    cores: Cores = None,
    memory_mib: Memory = None,
    disk_gb: Disk = None,
    machines: Machines = None,
    budget: Budget = None,
    checkpoint_schedule: Schedule = None,
    retention: Retention = None,
    json_output: JsonOption = False,
) -> None:
    """Create a project (unset limits: none)."""
    from runtime.machines.projects import ProjectStore

    output.set_json(json_output)
    p = (
        ProjectStore(database_from_settings())
        .create(
            name,
            cores=cores,
            memory_mib=memory_mib,
            disk_gb=disk_gb,
            machines=machines,
            budget=budget,
            checkpoint_schedule=checkpoint_schedule,
            retention=_retention(retention),
        )
        .to_public()
    )
    output.emit(p, _text(p))


@app.command("set")
def set_(
    name: NameArgument,
    cores: Cores = None,
    memory_mib: Memory = None,
    disk_gb: Disk = None,
    machines: Machines = None,
    budget: Budget = None,
    checkpoint_schedule: Schedule = None,
    retention: Retention = None,
    clear: Annotated[
        list[str] | None,
        typer.Option(
            "--clear",
            help="Remove a limit or setting: cores, memory-mib, disk-gb, machines, budget, "
            "checkpoint-schedule, retention (repeatable).",
        ),
    ] = None,
    json_output: JsonOption = False,
) -> None:
    """Change a project's limits, budget, schedule or retention."""
    from runtime.machines.projects import ProjectStore

    output.set_json(json_output)
    fields = {
        "cores": "max_cores",
        "memory-mib": "max_memory_mib",
        "disk-gb": "max_disk_gb",
        "machines": "max_machines",
        "budget": "budget",
        "checkpoint-schedule": "checkpoint_schedule",
        "retention": "retention",
    }
    changes: dict[str, Any] = {
        k: v
        for k, v in {
            "max_cores": cores,
            "max_memory_mib": memory_mib,
            "max_disk_gb": disk_gb,
            "max_machines": machines,
            "budget": budget,
            "checkpoint_schedule": checkpoint_schedule,
            "retention": _retention(retention),
        }.items()
        if v is not None
    }
    for item in clear or []:
        if item not in fields:
            raise UsageError(f"--clear {item!r}: one of {', '.join(fields)}")
        changes[fields[item]] = None
    if not changes:
        raise UsageError(
            "nothing to change: give a limit, --budget, --checkpoint-schedule, --retention or --clear"
        )
    p = ProjectStore(database_from_settings()).set(name, **changes).to_public()
    output.emit(p, _text(p))


@app.command("list")
def list_(json_output: JsonOption = False) -> None:
    """Every project."""
    from runtime.machines.projects import ProjectStore

    output.set_json(json_output)
    rows = [p.to_public() for p in ProjectStore(database_from_settings()).list()]
    output.emit({"projects": rows}, "\n".join(_text(p) for p in rows) if rows else "no projects")


@app.command()
def show(name: NameArgument, json_output: JsonOption = False) -> None:
    """One project."""
    from runtime.machines.projects import ProjectStore

    output.set_json(json_output)
    p = ProjectStore(database_from_settings()).show(name).to_public()
    output.emit(p, _text(p))
