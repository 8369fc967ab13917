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
import uuid
from collections.abc import Generator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

import filelock
import redis
import redis.exceptions

from runtime.errors import LockBackendError, LockBusyError
from runtime.settings import Settings


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
    def __init__(self, url: str, *, ttl: float) -> None:
        self.url = url
        self.ttl = ttl
        self._client = redis.Redis.from_url(  # pyright: ignore[reportUnknownMemberType]
            url, socket_connect_timeout=5, socket_timeout=5
        )

    @contextmanager
    def hold(self, name: str, *, wait: float) -> Generator[None, None, None]:
        key = f"hub:lock:{name}"
        lock = self._client.lock(key, timeout=self.ttl, blocking_timeout=wait)
        try:
            self._break_if_stale(key)
            acquired = lock.acquire(blocking=True, token=holder_token())
        except redis.exceptions.RedisError as exc:
            raise LockBackendError(
                f"Redis ({_safe(self.url)}) is configured for locks but unreachable: {exc}; refusing to run "
                "without the lock"
            ) from None
        if not acquired:
            raise LockBusyError(_busy(name, wait))
        try:
            yield
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass  # expired while we held it: the next holder owns it now, nothing to release
            except redis.exceptions.RedisError:
                pass  # Redis went away; the lock expires by itself after its TTL

    def _break_if_stale(self, key: str) -> None:
        """Free a lock whose holder was a process on this machine that no longer exists.

        A killed holder cannot release its Redis lock, and waiting out the TTL would stall the
        restarted service's reconcile for minutes. The token names host, pid and the process's start
        time (pids are reused, and in a container the service is pid 1 after every restart), so only
        a provably dead local holder is broken, atomically and only if the value is still its own.
        """
        raw = self._client.get(key)
        if not isinstance(raw, bytes):
            return
        value = raw.decode(errors="replace")
        if holder_alive(value):
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
    """``host:pid:start-time:random``: who holds a lock, precisely enough to tell it died."""
    pid = os.getpid()
    return f"{socket.gethostname()}:{pid}:{_start_time(pid) or '?'}:{uuid.uuid4().hex}"


def holder_alive(token: str) -> bool:
    """False only when the token names a process on this host that is gone; True when unsure."""
    parts = token.split(":")
    if len(parts) != 4 or parts[0] != socket.gethostname() or not parts[1].isdigit() or parts[2] == "?":
        return True
    return _start_time(int(parts[1])) == parts[2]


def locks_for(settings: Settings) -> FileLocks | RedisLocks:
    if settings.redis_url:
        # Long enough to cover the longest VM operation we allow (task bound + lock-wait budget).
        ttl = settings.task_timeout_seconds * 2 + settings.locked_retry_seconds + 60
        return RedisLocks(settings.redis_url, ttl=ttl)
    return FileLocks(settings.lock_dir or Path(tempfile.gettempdir()) / "hub-locks")


def _busy(name: str, wait: float) -> str:
    return f"another operation holds the lock {name}; gave up after {wait:.0f}s"


def vm_lock_name(vmid: int) -> str:
    return f"vm-{vmid}"


def _safe(url: str) -> str:
    return url.split("@")[-1]
