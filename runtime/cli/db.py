"""``hubctl db ...``: the database schema (Alembic migrations)."""

from __future__ import annotations

import typer

from runtime.cli import output
from runtime.cli.common import JsonOption, services_from_settings

app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)


@app.command("upgrade")
def upgrade(json_output: JsonOption = False) -> None:
    """Apply pending migrations. Idempotent."""
    output.set_json(json_output)
    db = services_from_settings().db
    before, after = db.upgrade()
    output.emit(
        {"from": before, "to": after, "changed": before != after},
        (f"database at revision {after}" + ("" if before != after else " (already up to date)"))
        + (" (was an empty database)" if before is None and after else ""),
    )


@app.command("current")
def current(json_output: JsonOption = False) -> None:
    """Show the schema revision of the database and of the code."""
    output.set_json(json_output)
    db = services_from_settings().db
    now, head = db.current_revision(), db.head_revision()
    output.emit(
        {"current": now, "head": head, "up_to_date": now == head},
        f"database {now}; code {head}" if now else f"empty database; code {head}",
    )
