"""The runtime's VM lock: at most one operation on a VM at a time, across processes and machines.

Every domain that changes a VM takes it: checkpoints, reconcile, rollback, machines, fleet. The lock
is named for the VM (``vm-<vmid>``), not for the operation, so a rollback and a snapshot of the same
VM exclude each other.

With ``HUB_REDIS_URL`` the lock is a Redis lock (redis-py's ``Lock``: SET NX PX plus a token, so only
the holder releases it), which also serialises Hubs on different machines. Its expiry bounds how
long a killed holder can block others. Without Redis it is an ``flock`` on a file (``filelock``),
which the kernel releases when the holder dies, even by SIGKILL.

If Redis is configured but down we refuse: silently falling back to a local lock could let two
machines snapshot the same VM at once.
"""

from __future__ import annotations

import os
import socket
import tempfile
import time
import uuid
from collections.abc import Generator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from pathlib import Path
from typing import Protocol

from runtime.errors import LockBackendError, LockBusyError, SettingsError
from runtime.settings import Settings


class VmLocks(Protocol):
    def hold(self, name: str, *, wait: float) -> AbstractContextManager[None]: ...


class LockObserver(Protocol):
    """Told how long each acquisition waited, and of each refusal (busy after ``wait``, or a lock
    backend that is down), for logs and metrics. Must not raise."""

    def on_acquired(self, name: str, *, waited: float) -> None: ...

    def on_refused(self, name: str, *, waited: float, reason: str) -> None: ...


class ObservedLocks:
    """Any ``VmLocks``, with its waits and refusals reported; the locking itself is the inner one's."""

    def __init__(self, inner: VmLocks, observer: LockObserver) -> None:
        self.inner = inner
        self.observer = observer

    @contextmanager
    def hold(self, name: str, *, wait: float) -> Generator[None, None, None]:
        started = time.monotonic()
        with ExitStack() as stack:
            try:
                stack.enter_context(self.inner.hold(name, wait=wait))
            except (LockBusyError, LockBackendError) as exc:
                reason = "busy" if isinstance(exc, LockBusyError) else "backend"
                self.observer.on_refused(name, waited=time.monotonic() - started, reason=reason)
                raise
            self.observer.on_acquired(name, waited=time.monotonic() - started)
            yield


class FileLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def hold(self, name: str, *, wait: float) -> Generator[None, None, None]:
        # Imported when a lock is first taken (21 modules, ~0.7 MiB): a read command and an idle
        # ``serve`` never take one.
        import filelock

        lock = filelock.FileLock(str(self.directory / f"{name}.lock"))
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock.acquire(timeout=wait)
        except filelock.Timeout:
            raise LockBusyError(busy_message(name, wait)) from None
        except OSError as exc:  # a file in the way, no permission, a read-only file system
            raise SettingsError("HUB_LOCK_DIR", f"cannot lock in {self.directory}: {exc.strerror}") from None
        try:
            yield
        finally:
            lock.release()


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]  # field 22, counted after the command name


def holder_token() -> str:
    """``host:pid:start-time:acquired-epoch:random``: who holds a lock and since when, precisely
    enough to tell that the holder died."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}:{int(time.time())}:{uuid.uuid4().hex}"


def holder_alive(token: str) -> bool:
    """False only when the token names a process on this host that is gone; True when unsure."""
    parts = token.split(":")
    if (
        len(parts) not in (4, 5)
        or parts[0] != socket.gethostname()
        or not parts[1].isdigit()
        or parts[2] == "?"
    ):
        return True
    return _start_time(int(parts[1])) == parts[2]


def held_since(token: str) -> float | None:
    """When the token's holder took the lock (epoch seconds), if the token says."""
    parts = token.split(":")
    return float(parts[3]) if len(parts) == 5 and parts[3].isdigit() else None


def is_this_process(token: str) -> bool:
    parts = token.split(":")
    pid = os.getpid()
    return len(parts) >= 4 and parts[:3] == [socket.gethostname(), str(pid), _start_time(pid) or "?"]


def locks_for(settings: Settings) -> VmLocks:
    if settings.redis_url:
        from runtime.redis_lock import RedisLocks  # redis (and its telemetry) only when configured

        return RedisLocks(settings.redis_url)
    return FileLocks(settings.lock_dir or Path(tempfile.gettempdir()) / "hub-locks")


def busy_message(name: str, wait: float) -> str:
    return f"another operation holds the lock {name}; gave up after {wait:.0f}s"


def vm_lock_name(vmid: int) -> str:
    return f"vm-{vmid}"
