"""Named failpoints: deterministic places where a test can freeze the process and kill it.

Crash safety is tested by killing a real ``hubctl`` process with SIGKILL at each step of a protocol.
Timing alone cannot hit "after the database row, before the snapshot request" reliably, so each
step calls ``reached("checkpoint.marked")``. Unless ``HUB_FAILPOINT`` names that step this is a no-op;
when it does, the process announces the step on stderr and stops there until it is killed, so the
kill lands exactly between two side effects. This is the failpoint technique of FoundationDB and
TiKV; it never changes what the code does, only where it may be frozen.

``HUB_FAILPOINT=checkpoint.marked=pause`` pauses instead: the process announces the step and stops
itself (SIGSTOP) until the test resumes it (SIGCONT), so a test can act on the world in between (start
the snapshot task whose answer is then "lost", restart a database) and watch what the process does.
"""

from __future__ import annotations

import os
import signal
import sys
import time

ENV = "HUB_FAILPOINT"


def reached(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted:
        return
    modes: dict[str, str] = {}
    for item in wanted.split(","):
        point, _, mode = item.partition("=")
        modes[point] = mode
    if name not in modes:
        return
    print(f"failpoint {name} reached (pid {os.getpid()})", file=sys.stderr, flush=True)
    if modes[name] == "pause":
        os.kill(os.getpid(), signal.SIGSTOP)  # until the test sends SIGCONT
        return
    while True:  # frozen until the test kills us
        time.sleep(3600)
