"""``hubctl audit ...``: the append-only audit trail (who did what to which target, and how it ended)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from runtime.cli import output
from runtime.cli.common import JsonOption, database_from_settings, examples
from runtime.cli.listing import DEFAULT_LIMIT, Listing

app = typer.Typer(
    help="The append-only audit trail of every Hub action.",
    no_args_is_help=True,
    epilog=examples("hubctl audit list", "hubctl audit list --target 3f2a0c1e-... --limit 10"),
)


@app.command("list")
def list_(
    target: Annotated[
        str | None,
        typer.Option("--target", help="Only entries about this target (a checkpoint uuid, job id...)."),
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, max=1_000_000, help="At most this many, newest first.")
    ] = DEFAULT_LIMIT,
    json_output: JsonOption = False,
) -> None:
    """Audit entries, newest first."""
    from runtime import audit

    output.set_json(json_output)
    with database_from_settings().session() as s:
        entries, total = audit.page(s, target=target, limit=limit)
    output.emit(
        {"entries": entries, "total": total},
        Listing(
            headers=("id", "at (UTC)", "actor", "action", "outcome", "target"),
            rows=[_row(e) for e in entries],
            title="audit entries",
            total=total,
            more="--limit N or --json",
        )
        if entries
        else "no audit entries",
    )


def _row(e: dict[str, Any]) -> tuple[str, ...]:
    return (str(e["id"]), output.minute(e["at"]), e["actor"], e["action"], e["outcome"], e["target"] or "-")


@app.callback()
def _group() -> None:
    """The append-only audit trail of every Hub action."""
