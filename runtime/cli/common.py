"""What every command shares: the --json option and building the services from settings."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from runtime.db import Database
    from runtime.wiring import Services

JsonOption = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
VmidOption = Annotated[
    int | None, typer.Option("--vmid", min=100, max=999_999_999, help="VM to act on (default HUB_VMID).")
]


def examples(*commands: str) -> str:
    """A help epilog listing example command lines, one per line at any terminal width."""
    return "Examples:\n\n" + "\n\n".join(f"  $ {c}" for c in commands)


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


class Waiting:
    """What a command waits for, on a terminal: progress lines printed, and below them one spinner
    line with the current reason and how long it has lasted. Without a terminal only the lines are
    printed; with --json nothing (stdout carries exactly one document)."""

    def __init__(self, json_output: bool) -> None:
        from runtime.cli import output

        self._quiet = json_output
        self._console = None if json_output else output.console
        self._status: Any = None
        self._reason = ""
        self._since = time.monotonic()
        if self._console is not None and self._console.is_terminal:
            self._status = self._console.status("", spinner="dots")

    def say(self, line: str) -> None:
        """A progress line; it also becomes the reason shown until the next one."""
        if self._console is not None:
            self._console.print(line, markup=False)
        self.wait(line)

    def wait(self, reason: str) -> None:
        if self._status is None:
            return
        if reason != self._reason:
            self._reason, self._since = reason, time.monotonic()
        self._status.update(f"waiting: {self._reason} ({time.monotonic() - self._since:.0f} s)")

    def __enter__(self) -> Waiting:
        if self._status is not None:
            self._status.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        if self._status is not None:
            self._status.stop()


def waiting(json_output: bool) -> Waiting:
    return Waiting(json_output)


@contextmanager
def progress_shown(json_output: bool, first: str) -> Generator[Callable[[str], None]]:
    """A progress callback for a long operation (``CheckpointService.build(..., progress=...)``):
    each line printed and, on a terminal, a spinner saying what the operation waits for since."""
    with waiting(json_output) as shown:
        shown.wait(first)
        yield shown.say
