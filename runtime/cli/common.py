"""What every command shares: the --json option and building the services from settings."""

from __future__ import annotations

import threading
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
    line with the current reason, how long it has lasted and, when the wait is bounded, the time left
    before the command gives up; redrawn twice a second. Without a terminal only the lines are
    printed; with --json nothing (stdout carries exactly one document).

    It is also the command's Proxmox and lock observer (``watch``): a Proxmox call being retried
    shows what failed, the attempt, and the time left of the retry budget until the call succeeds;
    once the VM's lock is taken, the lock is no longer what the command waits for."""

    def __init__(self, json_output: bool) -> None:
        from runtime.cli import output

        self._quiet = json_output
        self._console = None if json_output else output.console
        self._status: Any = None
        self._reason = ""
        self._since = time.monotonic()
        self._until: float | None = None
        self._before_retry: tuple[str, float, float | None] | None = None
        self._retry_started: dict[str, float] = {}
        self._budgets = (30.0, 120.0)  # transient, locked: replaced by the settings' in ``watch``
        self._after_lock = ""
        self._task_timeout: float | None = None
        self._guard = threading.Lock()
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()
        if self._console is not None and self._console.is_terminal:
            self._status = self._console.status("", spinner="dots")

    def watch(self, services: Services, *, after_lock: str = "") -> None:
        """Be the services' Proxmox and lock observer (before either is first used)."""
        settings = services.settings
        self._budgets = (settings.transient_retry_seconds, settings.locked_retry_seconds)
        self._after_lock = after_lock
        self._task_timeout = settings.task_timeout_seconds
        services.proxmox_observer = self
        services.lock_observer = self

    def say(self, line: str) -> None:
        """A progress line; it also becomes the reason shown until the next one. A line naming a
        Proxmox task (its UPID) is a wait for that task, bounded by ``HUB_TASK_TIMEOUT_SECONDS``."""
        if self._console is not None:
            self._console.print(line, markup=False)
        self.wait(line, within=self._task_timeout if "UPID:" in line else None)

    def wait(self, reason: str, *, within: float | None = None) -> None:
        """Show ``reason``; ``within``: seconds from now after which the command gives up waiting."""
        with self._guard:
            if reason != self._reason:
                self._reason, self._since = reason, time.monotonic()
                self._until = None if within is None else self._since + within
        self._draw()

    def line(self) -> str:
        """The spinner's text now."""
        now = time.monotonic()
        with self._guard:
            text = f"waiting: {self._reason} ({now - self._since:.0f} s"
            if self._until is not None:
                text += f", {max(self._until - now, 0.0):.0f} s left"
        return text + ")"

    def _draw(self) -> None:
        if self._status is not None:
            self._status.update(self.line())

    # ---------------------------------------------------------- observers

    def on_request(self, kind: str, *, seconds: float, error: str | None) -> None:
        if error is not None:
            return
        with self._guard:
            self._retry_started.pop(kind, None)
            before, self._before_retry = self._before_retry, None
        if before is not None:  # the retried call went through: back to what was shown before
            reason, since, until = before
            with self._guard:
                self._reason, self._since, self._until = reason, since, until
            self._draw()

    def on_retry(self, kind: str, *, attempt: int, delay: float, error: Exception) -> None:
        from hubcore.proxmox.errors import ProxmoxLockedError

        now = time.monotonic()
        budget = self._budgets[1] if isinstance(error, ProxmoxLockedError) else self._budgets[0]
        with self._guard:
            started = self._retry_started.setdefault(kind, now)
            if self._before_retry is None:
                self._before_retry = (self._reason, self._since, self._until)
        self.wait(
            f"Proxmox {kind} failed ({error}); attempt {attempt + 1} in {delay:.1f} s",
            within=max(budget - (now - started), 0.0),
        )

    def on_acquired(self, name: str, *, waited: float) -> None:
        if self._after_lock:
            self.wait(self._after_lock)

    def on_refused(self, name: str, *, waited: float, reason: str) -> None:
        pass

    # ------------------------------------------------------------ context

    def _tick(self) -> None:
        while not self._stop.wait(0.5):
            self._draw()

    def __enter__(self) -> Waiting:
        if self._status is not None:
            self._status.start()
            self._ticker = threading.Thread(target=self._tick, name="hubctl-waiting", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
        if self._status is not None:
            self._status.stop()


def waiting(json_output: bool) -> Waiting:
    return Waiting(json_output)


@contextmanager
def progress_shown(json_output: bool, services: Services, *, then: str) -> Generator[Callable[[str], None]]:
    """A progress callback for a long operation on a VM (``CheckpointService.build(..., progress=...)``):
    each line printed and, on a terminal, a spinner saying what the operation waits for: first the
    VM's lock (with the time left of ``HUB_LOCK_WAIT_SECONDS``), then ``then``, a Proxmox call being
    retried (with the time left of its retry budget), each progress line in turn."""
    with waiting(json_output) as shown:
        shown.watch(services, after_lock=then)
        shown.wait("the VM's lock", within=services.settings.lock_wait_seconds)
        yield shown.say
