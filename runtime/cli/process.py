"""How a ``hubctl`` process starts and ends: the two costs that are not the command's work.

Start: CPython's cyclic collector runs every 700 net allocations and, as the heap grows while a
command imports SQLAlchemy, pydantic and friends, rescans everything imported so far: ~100-140 ms
of a 0.8 s ``checkpoint list``. A short command turns it off (``start``) and leaves it off: it ends
within seconds, reference counting still frees almost everything at once, and the few cycles it
makes are reclaimed by the operating system with the process. A command that stays up (``serve``,
``lab``, ``checkpoint schedule``) calls ``long_running()`` first: what was imported so far is frozen
(never scanned again) and the collector is back on for the rest of its life.

End: the interpreter's own shutdown frees every module and object one by one, ~0.2 s that the
operating system would do at once. A short command ends with ``os._exit`` instead (``end``), but only
after what a normal exit would do that anyone can observe: stdout and stderr flushed, every
``atexit`` hook run (logging's flush, weakref finalizers, and runtime.db's, which closes every
database engine: PostgreSQL sees a clean goodbye, SQLite checkpoints its WAL as on a normal
close). It falls back to the normal exit when that could skip cleanup someone needs: a
long-running command, another thread still alive (the interpreter would join it), a child process
(multiprocessing would reap it), or an output stream that cannot be flushed (the interpreter
reports that, and exits 120).
"""

from __future__ import annotations

import atexit
import gc
import os
import sys
import threading
from typing import NoReturn

_stays_up = False


def start() -> None:
    """No cyclic collection while a short command imports and runs (see the module docstring)."""
    gc.disable()


def long_running() -> None:
    """Called first by a command that stays up: collector back on, and the normal exit at the end."""
    global _stays_up
    _stays_up = True
    gc.freeze()  # the modules imported so far live as long as the process: never rescan them
    gc.enable()


def end(code: int) -> NoReturn:
    """Exit with ``code``: at once when nothing needs the interpreter's shutdown, normally otherwise."""
    if _stays_up or not _alone():
        sys.exit(code)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):  # a closed pipe or stream: the normal exit reports it as it always did
        sys.exit(code)
    atexit._run_exitfuncs()  # pyright: ignore[reportPrivateUsage]  # what sys.exit would run, nothing more
    os._exit(code)


def _alone() -> bool:
    """No other thread and no child process: nothing the interpreter's shutdown would wait for."""
    if threading.active_count() > 1:
        return False
    multiprocessing = sys.modules.get("multiprocessing")
    return multiprocessing is None or not multiprocessing.active_children()
