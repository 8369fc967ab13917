"""`hubctl lab` on fixed ports prints export lines that paste into an interactive bash (the token's
`!` would be history expansion unquoted), and a SIGKILLed lab leaves neither its simulator nor its
service running (parent-death signal)."""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from runtime.lab.walkthrough import export_lines
from tests.support.hubenv import REPO

READY = "Ctrl-C (or SIGTERM) stops the lab"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children(pid: int) -> list[int]:
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _pasted(lines: list[str], variable: str) -> str:
    """What an interactive bash has in ``variable`` after the lines are pasted into it."""
    script = "\n".join([*lines, f'printf "<%s>\\n" "${variable}"', "exit"]) + "\n"
    result = subprocess.run(
        ["bash", "--norc", "--noprofile", "-i"], input=script, capture_output=True, text=True, timeout=30
    )
    values = [line for line in result.stdout.splitlines() if line.startswith("<")]
    return values[-1][1:-1] if values else ""


def test_export_lines_are_quoted_for_an_interactive_shell() -> None:
    env = {"HUB_PROXMOX_API_TOKEN": "hub@pve!hub=ab12", "HUB_LOCK_DIR": "/tmp/a dir", "PATH": "/bin"}
    lines = export_lines(env)
    assert lines == ["export HUB_LOCK_DIR='/tmp/a dir'", "export HUB_PROXMOX_API_TOKEN='hub@pve!hub=ab12'"]
    assert _pasted(lines, "HUB_PROXMOX_API_TOKEN") == "hub@pve!hub=ab12"
    assert _pasted(lines, "HUB_LOCK_DIR") == "/tmp/a dir"


def test_lab_on_given_ports_and_nothing_outlives_a_sigkill(tmp_path: Path) -> None:
    port, api_port = _free_port(), _free_port()
    state = tmp_path / "lab"
    ports = ["--port", str(port), "--api-port", str(api_port)]
    lab = subprocess.Popen(
        [sys.executable, "-m", "runtime", "lab", "--state-dir", str(state), *ports],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path), "COLUMNS": "200"},
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert lab.stdout is not None
        out: list[str] = []
        deadline = time.monotonic() + 240
        for line in lab.stdout:
            out.append(line)
            if READY in line or time.monotonic() > deadline:
                break
        text = "".join(out)
        assert READY in text, text[-3000:]
        assert f"http://127.0.0.1:{api_port}" in text
        exports = [line.strip() for line in out if line.strip().startswith("export HUB_")]
        assert f"export HUB_PROXMOX_URL=https://127.0.0.1:{port}" in exports
        token_line = next(line for line in exports if line.startswith("export HUB_PROXMOX_API_TOKEN="))
        token = shlex.split(token_line)[1].split("=", 1)[1]
        assert "!" in token
        assert _pasted(exports, "HUB_PROXMOX_API_TOKEN") == token
        children = _children(lab.pid)
        assert len(children) == 2, children  # the simulator and `hubctl serve`
    finally:
        lab.send_signal(signal.SIGKILL)
        lab.wait(timeout=30)
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = [pid for pid in children if _alive(pid)]
    for pid in left:  # do not leak them into the rest of the suite, then fail
        os.kill(pid, signal.SIGKILL)
    assert not left, f"outlived the SIGKILLed lab: {left}"
