"""What every command shares: the --json option and building the Hub from settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer

from runtime.settings import load_settings
from runtime.wiring import Hub

JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]


def hub_from_settings(progress: Callable[[str], None] | None = None) -> Hub:
    """Load the settings once (errors name the setting, exit 2) and build the Hub around them."""
    settings = load_settings()
    hub = Hub(settings=settings)
    if progress is not None:
        hub.progress = progress
    return hub
