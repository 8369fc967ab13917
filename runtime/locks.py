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

import logging
import os
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Generator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol

import filelock
import redis
import redis.exceptions

from runtime.errors import LockBackendError, LockBusyError
from runtime.settings import Settings

log = logging.getLogger(__name__)
# The Redis lock's TTL, renewed every third of it while held: a vanished holder blocks others for at
# most this long, whatever the length of the operation.
RENEWED_TTL_SECONDS = 60.0


class VmLocks(Protocol):
    def hold(self, name: str, *, wait: float) -> AbstractContextManager[None]: ...


class FileLocks:
    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @contextmanager
    def hold(self, name: str, *, wait: float) -> Generator[None, None, None]:
        self.directory.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(self.directory / f"{name}.lock"))
        try:
            lock.acquire(timeout=wait)
        except filelock.Timeout:
            raise LockBusyError(_busy(name, wait)) from None
        try:
            yield
        finally:
            lock.release()


class RedisLocks:
    """The VM lock in Redis. Its TTL is short and renewed while the holder works (redis-py's
    ``Lock.extend``), so a holder that vanishes without releasing (killed on another machine, or its
    release lost to a Redis restart that brought the key back from the append-only file) blocks
    others for one TTL at most, however long operations may legitimately take."""

    def __init__(self, url: str, *, ttl: float = RENEWED_TTL_SECONDS) -> None:
        self.url = url
        self.ttl = ttl
        self._client = redis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
            url, socket_connect_timeout=5, socket_timeout=5
        )
        # The tokens this process holds right now: a token of ours that is not here is provably stale.
        self._held: set[str] = set()
        self._held_lock = threading.Lock()

    @contextmanager
    def hold(self, name: str, *, wait: float) -> Generator[None, None, None]:
        key = f"hub:lock:{name}"
        lock = self._client.lock(key, timeout=self.ttl, blocking_timeout=wait)
        token = holder_token()
        try:
            self._break_if_stale(key)
            acquired = lock.acquire(blocking=True, token=token)
        except redis.exceptions.RedisError as exc:
            raise LockBackendError(
                f"Redis ({_safe(self.url)}) is configured for locks but unreachable: {exc}; refusing to run "
                "without the lock"
            ) from None
        if not acquired:
            raise LockBusyError(_busy(name, wait))
        with self._held_lock:
            self._held.add(token)
        stop = threading.Event()
        renewer = threading.Thread(target=self._renew, args=(lock, stop), name=f"renew-{name}", daemon=True)
        renewer.start()
        try:
            yield
        finally:
            stop.set()
            renewer.join(timeout=5)
            with self._held_lock:
                self._held.discard(token)
            self._release(lock, name)

    def _renew(self, lock: Any, stop: threading.Event) -> None:
        while not stop.wait(self.ttl / 3):
            try:
                lock.extend(self.ttl, replace_ttl=True)
            except redis.exceptions.LockError:
                log.error("lost the lock %s while holding it (it expired)", lock.name)
                return
            except redis.exceptions.RedisError as exc:  # Redis restarting: try again at the next tick
                log.warning("could not renew the lock %s: %s", lock.name, exc)

    def _release(self, lock: Any, name: str) -> None:
        """Release, retrying while Redis does not answer: a release lost to a Redis restart would
        come back with the key from the append-only file. Bounded by the TTL, after which the key
        expires by itself (the expiry is absolute, so the file restores it with the same deadline)."""
        deadline = time.monotonic() + self.ttl
        delay = 0.2
        while True:
            try:
                lock.release()
                return
            except redis.exceptions.LockError:
                return  # expired or taken over meanwhile: nothing of ours to release
            except redis.exceptions.RedisError as exc:
                if time.monotonic() >= deadline:
                    log.warning("could not release the lock %s (%s); it expires by itself", name, exc)
                    return
                time.sleep(delay)
                delay = min(delay * 2, 2.0)

    def holders(self) -> list[tuple[str, str]]:
        """(lock name, holder token) of every Hub lock currently held: for health."""
        out: list[tuple[str, str]] = []
        for key in self._client.scan_iter(match="hub:lock:*", count=100):  # pyright: ignore[reportUnknownMemberType,reportUnknownVariableType]
            raw = self._client.get(key)  # pyright: ignore[reportUnknownArgumentType]
            if isinstance(raw, bytes):
                out.append((bytes(key).decode().removeprefix("hub:lock:"), raw.decode(errors="replace")))  # pyright: ignore[reportUnknownArgumentType]
        return out

    def _break_if_stale(self, key: str) -> None:
        """Free a lock whose holder provably no longer uses it.

        A killed holder cannot release its Redis lock. The token names host, pid, the process's start
        time and when it was taken (pids are reused, and in a container the service is pid 1 after
        every restart), so a holder on this machine that is gone, or a token of this very process that
        it no longer holds (its release was lost), is broken, atomically and only if the value is
        still that token.
        """
        raw = self._client.get(key)
        if not isinstance(raw, bytes):
            return
        value = raw.decode(errors="replace")
        with self._held_lock:
            ours_but_released = _is_this_process(value) and value not in self._held
        if holder_alive(value) and not ours_but_released:
            return
        self._client.eval(_DELETE_IF_EQUAL, 1, key, value)  # pyright: ignore[reportUnknownMemberType]


_DELETE_IF_EQUAL = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


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


def _is_this_process(token: str) -> bool:
    parts = token.split(":")
    pid = os.getpid()
    return len(parts) >= 4 and parts[:3] == [socket.gethostname(), str(pid), _start_time(pid) or "?"]


def locks_for(settings: Settings) -> FileLocks | RedisLocks:
    if settings.redis_url:
        return RedisLocks(settings.redis_url)
    return FileLocks(settings.lock_dir or Path(tempfile.gettempdir()) / "hub-locks")


def _busy(name: str, wait: float) -> str:
    return f"another operation holds the lock {name}; gave up after {wait:.0f}s"


def vm_lock_name(vmid: int) -> str:
    return f"vm-{vmid}"


def _safe(url: str) -> str:
    return url.split("@")[-1]
