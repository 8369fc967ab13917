"""An unreachable Proxmox is one short line naming host:port and the cause, from the real hubctl; the
messages come from the root of urllib3's nested exceptions, not its truncated repr."""

from __future__ import annotations

import os
import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hubcore.proxmox.client import _translated  # pyright: ignore[reportPrivateUsage]
from hubcore.proxmox.errors import ProxmoxUnreachable
from runtime.db import Database
from tests.support.hubenv import HUBCTL, REPO, TOKEN_ID, TOKEN_SECRET, one_line_error


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def silent_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def _unreachable(url: str, timeout: float = 2) -> str:
    with pytest.raises(ProxmoxUnreachable) as caught:
        _translated(lambda: requests.get(url, timeout=timeout))
    return str(caught.value)


def test_refused_timed_out_and_unresolvable_are_named_shortly(silent_server: int) -> None:
    port = _closed_port()
    assert _unreachable(f"https://127.0.0.1:{port}/api2/json") == (
        f"Proxmox API at 127.0.0.1:{port} unreachable: connection refused"
    )
    assert _unreachable(f"https://127.0.0.1:{silent_server}/", timeout=0.3) == (
        f"Proxmox API at 127.0.0.1:{silent_server} unreachable: timed out"
    )
    message = _unreachable("https://no-such-host.invalid:8006/")
    assert message == "Proxmox API at no-such-host.invalid:8006 unreachable: name does not resolve"


def test_hubctl_says_it_once_in_one_line(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    Database(url).upgrade()
    port = _closed_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(
        PYTHONPATH=str(REPO),
        HUB_DATABASE_URL=url,
        HUB_LOCK_DIR=str(tmp_path / "locks"),
        HUB_PROXMOX_URL=f"https://127.0.0.1:{port}",
        HUB_PROXMOX_API_TOKEN=f"{TOKEN_ID}={TOKEN_SECRET}",
        HUB_PROXMOX_INSECURE="true",
        HUB_NODE="pve1",
        HUB_VMID="100",
        HUB_TRANSIENT_RETRY_SECONDS="1",
    )
    result = subprocess.run(
        [*HUBCTL, "checkpoint", "create"], capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path
    )
    assert result.returncode == 1
    line = one_line_error(result.stderr)
    assert line == f"hubctl: error: Proxmox API at 127.0.0.1:{port} unreachable: connection refused"
    assert "urllib3" not in result.stdout + result.stderr
