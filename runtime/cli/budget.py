"""``hubctl budget show``: usage, limits, spending, burn rate and projected exhaustion per project."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from runtime.cli import output
from runtime.cli.common import JsonOption, database_from_settings

app = typer.Typer(
    help="Budgets of projects: what they use, spend and when the money runs out.", no_args_is_help=True
)


@app.callback()
def _group() -> None:
    """Budgets of projects: what they use, spend and when the money runs out."""


def _text(p: dict[str, Any]) -> str:
    u, lim = p["usage"], p["limits"]
    parts = [
        f"{k} {u[k]}/{lim[k] if lim[k] is not None else '-'}"
        for k in ("machines", "cores", "memory_mib", "disk_gb")
    ]
    money = "no budget" if p["budget"] is None else f"spent {p['spent']:.2f} of {p['budget']:g}"
    end = p["projected_exhaustion"] or "never at this rate"
    line = f"{p['project']}: {', '.join(parts)}; {money}; burn {p['burn_rate']:.4f}/h; exhausted {end}"
    if p["over_budget_since"]:
        line += f"; OVER BUDGET since {p['over_budget_since']}"
    return line


@app.command()
def show(
    project: Annotated[str | None, typer.Option("--project", help="Only this project.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Per project: limits, usage, budget, spent, burn rate (per hour) and projected exhaustion."""
    from datetime import UTC, datetime

    from runtime.machines.budget import report
    from runtime.machines.projects import ProjectStore
    from runtime.settings import load_settings

    output.set_json(json_output)
    db = database_from_settings()
    if project is not None:
        ProjectStore(db).show(project)  # an unknown project is one line, exit 2
    doc = report(db, load_settings(), now=datetime.now(UTC), project=project)
    output.emit(doc, "\n".join(_text(p) for p in doc["projects"]) or "no projects")
