"""Liveness of this process's long-running threads: the scheduler and the job workers.

A thread that is merely alive proves little: a worker stuck forever in a Proxmox call is alive and
useless. So each party says what it is doing and by when it must be done:

- the scheduler beats from an APScheduler interval job (``beat``); a scheduler whose thread died or
  whose executor is wedged stops beating, and its beat grows stale;
- a job-worker thread is registered when it boots (with its ``threading.Thread``, so a thread that
  died is seen at once), is idle between jobs (an idle thread waiting for work is healthy while it
  lives), and while it runs a job it is ``busy`` with a deadline: the job kind's timeout. A job still
  running past its deadline means a hung thread.

The registry is in-process (the service's own threads; ``runtime.health`` reads it) and holds no
lock across a caller's work. It imports nothing of the domains: the queue and the scheduler tell it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from contextlib import contextmanager
from dataclasses import dataclass

Clock = Callable[[], float]


@dataclass(frozen=True, slots=True)
class Beat:
    """What one party last said. Times are ``clock()`` values (wall-clock seconds by default)."""

    name: str
    role: str  # "scheduler" or "worker"
    last: float  # the last beat (or the start of the current job)
    every: float | None  # the promised beat interval (scheduler); None for workers
    busy_with: str | None = None
    deadline: float | None = None  # when the current job must be over
    thread_alive: bool | None = None  # None: no thread registered (a beat-only party)


class Heartbeats:
    def __init__(self, *, clock: Clock = time.time) -> None:
        self.clock = clock
        self._lock = threading.Lock()
        self._beats: dict[str, Beat] = {}
        self._threads: dict[str, threading.Thread] = {}

    # ---------------------------------------------------------------- writers

    def beat(self, name: str, *, role: str, every: float | None = None) -> None:
        """An idle beat: alive, doing nothing in particular (``every``: the promised interval)."""
        with self._lock:
            self._beats[name] = Beat(name=name, role=role, last=self.clock(), every=every)

    def watch_thread(self, name: str, thread: threading.Thread, *, role: str) -> None:
        """Register a thread whose death must be noticed (a worker thread, when it boots)."""
        with self._lock:
            self._threads[name] = thread
            self._beats[name] = Beat(name=name, role=role, last=self.clock(), every=None)

    def forget(self, name: str) -> None:
        """A party that stops on purpose (shutdown) is no longer expected to beat."""
        with self._lock:
            self._beats.pop(name, None)
            self._threads.pop(name, None)

    @contextmanager
    def busy(self, name: str, *, role: str, what: str, timeout: float) -> Generator[None]:
        """Mark ``name`` as running ``what`` until the block ends; hung once ``timeout`` passes."""
        start = self.clock()
        with self._lock:
            self._beats[name] = Beat(
                name=name, role=role, last=start, every=None, busy_with=what, deadline=start + timeout
            )
        try:
            yield
        finally:
            with self._lock:
                if name in self._beats:  # not forgotten meanwhile (shutdown)
                    self._beats[name] = Beat(name=name, role=role, last=self.clock(), every=None)

    # ---------------------------------------------------------------- readers

    def snapshot(self) -> list[Beat]:
        with self._lock:
            beats = list(self._beats.values())
            threads = dict(self._threads)
        out: list[Beat] = []
        for b in sorted(beats, key=lambda b: b.name):
            thread = threads.get(b.name)
            alive = None if thread is None else thread.is_alive()
            out.append(
                Beat(
                    name=b.name,
                    role=b.role,
                    last=b.last,
                    every=b.every,
                    busy_with=b.busy_with,
                    deadline=b.deadline,
                    thread_alive=alive,
                )
            )
        return out

    def roles(self) -> set[str]:
        with self._lock:
            return {b.role for b in self._beats.values()}
