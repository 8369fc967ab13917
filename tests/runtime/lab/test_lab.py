"""The README's main command ends in `hubctl lab`; its scripted walk-through must pass."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

from tests.support.hubenv import REPO


def test_lab_once_walks_through_and_cleans_up(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime", "lab", "--once", "--state-dir", str(tmp_path / "lab")],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    for step in (
        "1. health",
        "2. checkpoint",
        "3. scheduled checkpoints",
        "4. crash",
        "5. the API",
        "6. health again",
        "7. task machines",
    ):
        assert step in out
    # The machines act: the quota refuses the third machine with no Proxmox call, and a VM destroyed
    # outside the Hub is noticed by cluster sync.
    assert "Proxmox calls made for the refused request: 0" in out
    assert "lab-1 is now 'missing'" in out
    # The fleet part: a checkpoint of the project's three machines, one refused by the simulator.
    assert "fleet summary: 3 selected, 2 completed, 1 failed" in out
    assert "failed: " in out and "snapshot feature is not available" in out
    assert "lab walk-through complete" in out
    assert "left 'creating'" in out and "database and Proxmox agree again" in out
    assert "POST /api/v1/checkpoints -> 202" in out and "job succeeded" in out
    assert "simulator stopped" in out and "API stopped" in out
    # The recovery act: the ladder walked visibly, a quarantine, healthy, the journal imported.
    assert "7. recovery" in out
    assert "rung 0: snapshot of the broken state" in out and "rung 1: restart" in out
    assert "quarantined: hub-" in out and "recovered" in out
    assert "journal event(s) from the VM's notes" in out
    # Every process the lab started is gone: nothing is still running with the lab's state dir.
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(tmp_path / "lab") not in ps


def test_fakepve_is_never_imported_by_runtime_code() -> None:
    """fakepve is AGPL: only the lab's simulator process may import it, nothing else in runtime/."""
    allowed = {REPO / "runtime" / "lab" / "simulator.py"}
    offenders = []
    for path in (REPO / "runtime").rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            if any(n.split(".")[0] == "fakepve" for n in names) and path not in allowed:
                offenders.append(str(path))
    assert offenders == []
    probe = (
        "import sys, runtime.cli, runtime.lab.walkthrough, runtime.lab.processes; "
        "print('fakepve' in sys.modules)"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO, check=True
    )
    assert loaded.stdout.strip() == "False"


def test_lab_keeps_running_until_ctrl_c_then_cleans_up(tmp_path: Path) -> None:
    import signal
    import time

    state = tmp_path / "lab"
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "lab", "--state-dir", str(state)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO), "HOME": str(tmp_path)},
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 240
    for line in proc.stdout:
        seen.append(line)
        if "stops the lab and every process" in line or time.monotonic() > deadline:
            break
    text = "".join(seen)
    assert "Authorization: Bearer hub_" in text and "/api/v1/checkpoints" in text
    time.sleep(1)
    assert proc.poll() is None  # still serving
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, rest
    assert "API stopped" in rest and "simulator stopped" in rest
    ps = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(state) not in ps
