"""What every command shares: the --json option and building the services from settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from runtime.db import Database
    from runtime.wiring import Services

JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
VmidOption = Annotated[
    int | None, typer.Option("--vmid", min=100, max=999_999_999, help="VM to act on (default HUB_VMID).")
]


def services_from_settings() -> Services:
    """Load the settings once (errors name the setting, exit 2) and build the services around them."""
    from runtime.settings import load_settings
    from runtime.wiring import Services

    return Services(load_settings())


def database_from_settings() -> Database:
    """The database at head, for commands that only read or write rows (no Proxmox, no lock).

    The same settings and the same ``ensure_ready`` as ``services_from_settings().ready_db()``, without
    importing ``runtime.wiring``: that module builds the Proxmox client and the VM lock too, and
    importing them (requests, urllib3, redis with its OpenTelemetry hooks) costs ~150 ms per call.
    """
    from runtime.db.session import Database
    from runtime.settings import load_settings

    db = Database.from_settings(load_settings())
    db.ensure_ready()
    return db


def progress_printer(json_output: bool) -> Callable[[str], None]:
    """Progress lines on the terminal; nothing with --json (stdout carries exactly one document)."""
    from runtime.cli import output

    if json_output:
        return lambda _line: None
    return lambda line: output.console.print(line, markup=False)
