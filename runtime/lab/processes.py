"""Processes the lab starts, and the guarantee that it stops every one of them.

Stopped in order by ``Lab.stop`` on a normal end, Ctrl-C or SIGTERM. If ``hubctl lab`` itself is
killed (SIGKILL, OOM killer), nothing of it runs any more: each child is then told by the kernel
(Linux's parent-death signal, set between fork and exec by ``child_options``) and gets SIGTERM,
which both the simulator and ``hubctl serve`` handle as a clean stop. Each child is in its own
process group, so a Ctrl-C on the terminal reaches only ``hubctl lab``, which stops them in order.
"""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.errors import OperationError
from runtime.lab.simulator import FAULTS_FILE, TOKEN_ENV

READY_TIMEOUT = 60.0
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _parent_death_signal() -> Callable[[], None] | None:
    """What runs in the child between fork and exec: ask for SIGTERM when the parent dies.

    Resolved here, before any fork, so the child only calls a C function (no import, no lookup).
    None where there is no prctl (not Linux): the lab then relies on its own stop only.
    """
    if not sys.platform.startswith("linux"):
        return None
    import ctypes

    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    parent = os.getpid()

    def arm() -> None:
        prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the signal was armed
            os.kill(os.getpid(), signal.SIGTERM)

    return arm


def child_options() -> dict[str, Any]:
    """Popen options for every long-lived process the lab starts (see the module docstring)."""
    options: dict[str, Any] = {"process_group": 0}
    arm = _parent_death_signal()
    if arm is not None:
        options["preexec_fn"] = arm
    return options


@dataclass
class Simulator:
    url: str
    cafile: str
    token: str
    process: subprocess.Popen[str]
    state_dir: Path

    def inject_faults(self, faults: list[dict[str, str]]) -> None:
        """Make the simulator answer matching requests with PVE's own errors (fakepve's ``fail``):
        the list goes through a file in its state dir, SIGUSR1 tells it to apply them, and its one
        JSON line says they are in place (runtime/lab/simulator.py)."""
        (self.state_dir / FAULTS_FILE).write_text(json.dumps(faults))
        self.process.send_signal(signal.SIGUSR1)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line or json.loads(line).get("faults") != len(faults):
            raise OperationError(f"the Proxmox simulator did not take the faults: {line.strip()[:200]!r}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_simulator(*, state_dir: Path, node: str, vmid: int, time_scale: float, port: int = 0) -> Simulator:
    # Checked without importing it: fakepve (AGPL) must never be loaded into this process.
    if importlib.util.find_spec("fakepve") is None:
        raise OperationError("the lab needs its Proxmox simulator: install the lab extra (`make lab` does)")
    token = f"hub@pve!hub={secrets.token_hex(16)}"
    env = dict(os.environ, **{TOKEN_ENV: token})
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runtime.lab.simulator",
            "--state-dir",
            str(state_dir),
            "--node",
            node,
            "--vmid",
            str(vmid),
            "--time-scale",
            str(time_scale),
            "--port",
            str(port),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **child_options(),
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    line = proc.stdout.readline()
    if not line or time.monotonic() > deadline:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise OperationError(f"the Proxmox simulator did not start: {(err or 'no output').strip()[:300]}")
    ready = json.loads(line)
    return Simulator(url=ready["url"], cafile=ready["cafile"], token=token, process=proc, state_dir=state_dir)
