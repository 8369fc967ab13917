"""A typer group whose sub-apps are imported only when used.

``hubctl --help`` lists every sub-command from the registry's table (name and one line of help)
without importing any of them; ``hubctl checkpoint ...`` imports the checkpoint CLI and nothing of
the other nouns. So a command that needs no database never loads SQLAlchemy or Alembic, and one
that needs no Proxmox never loads proxmoxer.
"""

from __future__ import annotations

from typing import Any, ClassVar

import typer
from typer import _click as click  # pyright: ignore[reportPrivateUsage]  # typer 0.2x vendors click
from typer.core import TyperCommand, TyperGroup

from runtime.domains import Command, load

_COMPLETION_PARAMS = ("install_completion", "show_completion")


class LazyGroup(TyperGroup):
    lazy: ClassVar[dict[str, Command]] = {}

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._loaded: dict[str, click.Command] = {}
        self._listing = False

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*super().list_commands(ctx), *(name for name in self.lazy if name not in self.commands)]

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = self.lazy.get(cmd_name)
        if entry is None:
            return super().get_command(ctx, cmd_name)
        if self._listing:  # help for the group: the table's line is enough, import nothing
            return TyperCommand(entry.name, help=entry.help, short_help=entry.help)
        if cmd_name not in self._loaded:
            command = typer.main.get_command(load(entry.target))
            command.name = entry.name
            # Completion is installed for ``hubctl`` as a whole (the root's options), not per noun.
            command.params = [p for p in command.params if p.name not in _COMPLETION_PARAMS]
            self._loaded[cmd_name] = command
        return self._loaded[cmd_name]

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False
