"""The Hub under test: its HUB_* environment, used in-process and by real `hubctl` processes, and
the small helpers every test shares. Fixtures live in tests/conftest.py; this is a module, so tests
import it (pytest advises against importing conftest)."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from hubcore.proxmox import ProxmoxClient
from runtime.checkpoints.queries import CheckpointQueries
from runtime.checkpoints.reconcile import Reconciler
from runtime.checkpoints.service import CheckpointService
from runtime.settings import Settings, load_settings
from runtime.wiring import Services

REPO = Path(__file__).resolve().parents[2]


HUBCTL = [sys.executable, "-m", "runtime"]


NODE = "pve1"


HUB_VMID = 100


TOKEN_ID = "hub@pve!hub"


def need(var: str) -> str:
    """A server URL from the test command; skipped when run by hand without it, an error in CI."""
    value = os.environ.get(var)
    if value:
        return value
    if os.environ.get("CI"):
        pytest.fail(f"{var} is not set: the test command (make test) starts the server and sets it")
    pytest.skip(f"{var} not set (run the suite with `make test` to get a real server)")


TOKEN_SECRET = str(uuid.UUID(int=0x5EC12E7))


@dataclass
class HubEnv:
    """The HUB_* environment of one Hub under test, usable in-process and by a real hubctl process."""

    values: dict[str, str]
    tmp: Path
    extra: dict[str, str] = field(default_factory=dict)

    def env(self, **overrides: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        env.update(self.values)
        env.update(overrides)
        env["PYTHONPATH"] = str(REPO)
        return env

    def settings(self, **overrides: Any) -> Settings:
        old = {k: os.environ.get(k) for k in self.values}
        os.environ.update(self.values)
        try:
            return load_settings(**overrides)
        finally:
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v

    def services(self, **overrides: Any) -> Services:
        return Services(self.settings(**overrides))

    def checkpoints(
        self, progress: Callable[[str], None] = lambda _m: None, **overrides: Any
    ) -> CheckpointService:
        return CheckpointService.build(self.services(**overrides), actor="test", progress=progress)

    def reconciler(self, **overrides: Any) -> Reconciler:
        return Reconciler.build(self.services(**overrides), actor="test")

    def queries(self) -> CheckpointQueries:
        return CheckpointQueries(self.services().ready_db())

    def run(self, *args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*HUBCTL, *args],
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=self.tmp,
        )

    def spawn(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [*HUBCTL, *args],
            env=self.env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=self.tmp,
        )


def make_env(pve: Any, cafile: str, tmp: Path, database_url: str, **extra: str) -> HubEnv:
    values = {
        "HUB_ENVIRONMENT": "development",
        "HUB_DATABASE_URL": database_url,
        "HUB_PROXMOX_URL": pve.url,
        "HUB_PROXMOX_API_TOKEN": f"{TOKEN_ID}={TOKEN_SECRET}",
        "HUB_PROXMOX_CA_BUNDLE": cafile,
        "HUB_NODE": NODE,
        "HUB_VMID": str(HUB_VMID),
        "HUB_LOCK_DIR": str(tmp / "locks"),
        # Keep failure tests quick; each test that needs longer budgets says so.
        "HUB_TRANSIENT_RETRY_SECONDS": "3",
        "HUB_LOCKED_RETRY_SECONDS": "3",
        "HUB_TASK_TIMEOUT_SECONDS": "30",
        "HUB_LOCK_WAIT_SECONDS": "10",
        # One API process, whatever the machine's CPU count (the default with Redis is one per CPU):
        # a test that kills or signals `serve` means that process. tests/runtime/test_serve_scaleout.py
        # runs several on purpose.
        "HUB_API_PROCESSES": "1",
    }
    values.update(extra)
    return HubEnv(values=values, tmp=tmp)


def hub_snapshots(pve: Any, vmid: int = HUB_VMID) -> dict[str, dict[str, Any]]:
    return {name: snap for name, snap in pve.vm(vmid).snapshots.items() if name.startswith("hub-")}


def one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one error line, got: {stderr!r}"
    assert "Traceback" not in stderr
    return lines[0]


def fake_pve_client(pve: Any, verify: bool | str, **options: Any) -> ProxmoxClient:
    """The real Proxmox client against fakepve with the test token, verifying ``verify`` (the fake's
    CA file, or another CA to show a refusal); ``options`` are the client's budgets and hooks."""
    user, _, name = TOKEN_ID.partition("!")
    return ProxmoxClient(
        base_url=pve.url,
        token_user=user,
        token_name=name,
        token_secret=TOKEN_SECRET,
        verify=verify,
        **options,
    )
