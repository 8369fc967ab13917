"""The VM lock in Redis (``HUB_REDIS_URL``): it also serialises Hubs on different machines.

redis-py's ``Lock`` is SET NX PX plus a token, so only the holder releases it. This module is imported
only when Redis is configured (``runtime.locks.locks_for``): redis-py loads OpenTelemetry at import.
If Redis is configured but down we refuse: silently falling back to a local lock could let two
machines snapshot the same VM at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Generator
from contextlib import contextmanager
from typing import Any

import redis
import redis.exceptions

from runtime.errors import LockBackendError, LockBusyError
from runtime.locks import busy_message, holder_alive, holder_token, is_this_process

log = logging.getLogger(__name__)
# The lock's TTL, renewed every third of it while held: a vanished holder blocks others for at most
# this long, whatever the length of the operation.
RENEWED_TTL_SECONDS = 60.0


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
            raise LockBusyError(busy_message(name, wait))
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
            ours_but_released = is_this_process(value) and value not in self._held
        if holder_alive(value) and not ours_but_released:
            return
        self._client.eval(_DELETE_IF_EQUAL, 1, key, value)  # pyright: ignore[reportUnknownMemberType]


_DELETE_IF_EQUAL = (
    "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end return 0"
)


def _safe(url: str) -> str:
    return url.split("@")[-1]
