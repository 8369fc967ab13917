"""Named failpoints: deterministic places where a test can freeze the process and kill it.

Crash safety is tested by killing a real ``hubctl`` process with SIGKILL at each step of a protocol.
Timing alone cannot hit "after the database row, before the snapshot request" reliably, so each
step calls ``reached("checkpoint.marked")``. Unless ``HUB_FAILPOINT`` names that step this is a no-op;
when it does, the process announces the step on stderr and stops there until it is killed, so the
kill lands exactly between two side effects. This is the failpoint technique of FoundationDB and
TiKV; it never changes what the code does, only where it may be frozen.
"""

from __future__ import annotations

import os
import sys
import time

ENV = "HUB_FAILPOINT"


def reached(name: str) -> None:
    wanted = os.environ.get(ENV)
    if not wanted or name not in wanted.split(","):
        return
    print(f"failpoint {name} reached (pid {os.getpid()})", file=sys.stderr, flush=True)
    while True:  # frozen until the test kills us
        time.sleep(3600)
