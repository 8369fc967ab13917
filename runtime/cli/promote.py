"""`hubctl promote SRC DST`: move the promotable stack settings from one Pulumi stack to another.

Shows the diff, then writes `Pulumi.<DST>.yaml` only after confirmation (`--yes` for automation).
The file is edited in place: only the promoted keys' lines change, comments and formatting stay.
Promoting from a production stack into a development one is warned about (stderr, or `warnings`).
Environment-specific keys are never touched; see hubinfra/promotion.py for the allowlist.
Exit codes: 0 done (or nothing to promote), 1 failed or declined, 2 bad input.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NoReturn

import typer

from hubinfra.promotion import (
    PromotionError,
    PromotionInputError,
    plan_promotion,
    render_diff,
    write_promotion,
)


def promote(
    src: str,
    dst: str,
    yes: bool = typer.Option(False, "--yes", help="write without asking (for automation)"),
    json_output: bool = typer.Option(False, "--json", help="print one JSON document"),
    project_dir: Path = typer.Option(
        Path("."), "--project-dir", help="directory holding Pulumi.<stack>.yaml"
    ),
) -> None:
    """Promote stack settings from SRC to DST (e.g. `hubctl promote dev prod`)."""
    try:
        plan = plan_promotion(project_dir=project_dir, src=src, dst=dst)
    except PromotionInputError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except PromotionError as exc:
        _fail(str(exc), json_output=json_output, src=src, dst=dst)

    result = {**plan.as_dict(), "written": False}
    if not json_output:
        for warning in plan.warnings:
            typer.echo(f"warning: {warning}", err=True)
    if plan.empty:
        if json_output:
            typer.echo(json.dumps(result))
        else:
            typer.echo(f"nothing to promote: {dst} already has {src}'s promotable settings")
        return

    if not json_output:
        typer.echo(render_diff(plan), nl=False)
    if not yes:
        confirmed = False
        if not json_output:
            try:
                confirmed = typer.confirm(f"Write {plan.path}?", default=False)
            except typer.Abort:
                confirmed = False
        if not confirmed:
            message = "not written: confirmation required (answer yes or pass --yes)"
            if json_output:
                typer.echo(json.dumps({**result, "error": message}))
            else:
                typer.echo(message, err=True)
            raise typer.Exit(1)

    try:
        write_promotion(plan)
    except (PromotionError, OSError) as exc:
        _fail(str(exc), json_output=json_output, src=src, dst=dst)
    if json_output:
        typer.echo(json.dumps({**result, "written": True}))
    else:
        typer.echo(f"wrote {plan.path}; run `pulumi preview --stack {dst}` before `pulumi up`")


def _fail(message: str, *, json_output: bool, src: str, dst: str) -> NoReturn:
    if json_output:
        typer.echo(json.dumps({"src": src, "dst": dst, "written": False, "error": message}))
    else:
        typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


# A one-command app: loaded by the root CLI only when `hubctl promote` is run (runtime/cli/lazy.py).
app = typer.Typer(add_completion=False)
app.command("promote", help="Promote stack settings from one Pulumi stack to another (dev -> prod).")(promote)
