"""Processes the lab starts, and the guarantee that it stops every one of them."""

from __future__ import annotations

import importlib.util
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from runtime.errors import OperationError
from runtime.lab.simulator import TOKEN_ENV

READY_TIMEOUT = 60.0


@dataclass
class Simulator:
    url: str
    cafile: str
    token: str
    process: subprocess.Popen[str]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)


def start_simulator(*, state_dir: Path, node: str, vmid: int, time_scale: float) -> Simulator:
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
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + READY_TIMEOUT
    line = proc.stdout.readline()
    if not line or time.monotonic() > deadline:
        proc.kill()
        _, err = proc.communicate(timeout=10)
        raise OperationError(f"the Proxmox simulator did not start: {(err or 'no output').strip()[:300]}")
    ready = json.loads(line)
    return Simulator(url=ready["url"], cafile=ready["cafile"], token=token, process=proc)
