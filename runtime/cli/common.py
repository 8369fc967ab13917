"""What every command shares: the --json option and building the services from settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
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


def progress_printer(json_output: bool) -> Callable[[str], None]:
    """Progress lines on the terminal; nothing with --json (stdout carries exactly one document)."""
    from runtime.cli import output

    if json_output:
        return lambda _line: None
    return lambda line: output.console.print(line, markup=False)
