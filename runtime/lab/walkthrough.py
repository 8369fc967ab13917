"""``hubctl lab``: a visible lifecycle of the Hub against a local Proxmox simulator.

Everything here drives the real runtime (settings, database, Proxmox client over verified TLS,
checkpoint protocol, scheduler, retention, reconcile); only Proxmox itself is simulated, by fakepve
in its own process. State lives in ``.hub-lab/`` under the current directory and is reset at start.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from apscheduler.triggers.interval import IntervalTrigger  # pyright: ignore[reportMissingTypeStubs]
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from runtime.checkpoints.queries import CheckpointQueries
from runtime.checkpoints.reconcile import Reconciler
from runtime.checkpoints.records import CheckpointKind, CheckpointRecord, CheckpointStatus
from runtime.checkpoints.schedule import CheckpointScheduler
from runtime.checkpoints.service import CheckpointService
from runtime.lab import machines_act
from runtime.lab.processes import Simulator, child_options, start_simulator
from runtime.lab.recovery_act import recovery_act
from runtime.settings import Environment, Settings
from runtime.wiring import Services

NODE = "pve1"
VMID = 100
# The lab's accelerated clock: the daily 00:00 UTC checkpoint becomes one every few seconds.
LAB_SCHEDULE_SECONDS = 4


class Lab:
    def __init__(self, *, root: Path, console: Console, port: int = 0, api_port: int = 0) -> None:
        self.root = root
        self.console = console
        self.port = port  # the simulator's; 0: any free port
        self.api_port = api_port  # the Hub API's; 0: any free port
        self.sim: Simulator | None = None
        self.services: Services | None = None
        self._checkpoints: CheckpointService | None = None
        self.api: subprocess.Popen[str] | None = None

    # --------------------------------------------------------------- set-up

    def start(self) -> Services:
        shutil.rmtree(self.root, ignore_errors=True)
        self.root.mkdir(parents=True)
        with self.console.status("starting the local Proxmox API simulator (fakepve) on loopback..."):
            self.sim = start_simulator(
                state_dir=self.root / "pve", node=NODE, vmid=VMID, time_scale=0.2, port=self.port
            )
        self.console.print(f"[green]✓[/] Proxmox simulator at {self.sim.url} (TLS verified with its own CA)")
        settings = Settings(**self.settings_values())
        self.services = Services(settings)
        before, after = self.services.db.upgrade()
        self.console.print(
            f"[green]✓[/] SQLite database {settings.database_url} migrated "
            f"{before or 'empty database'} -> {after}"
        )
        return self.services

    @property
    def checkpoints(self) -> CheckpointService:
        assert self.services is not None
        if self._checkpoints is None:
            self._checkpoints = CheckpointService.build(
                self.services, actor="lab", progress=lambda m: self.console.print(f"   · {m}", markup=False)
            )
        return self._checkpoints

    def listed(self) -> list[CheckpointRecord]:
        assert self.services is not None
        return CheckpointQueries(self.services.ready_db()).list()

    def settings_values(self) -> dict[str, Any]:
        assert self.sim is not None
        return {
            "environment": Environment.DEVELOPMENT,
            "database_url": f"sqlite:///{self.root / 'hub.db'}",
            "proxmox_url": self.sim.url,
            "proxmox_api_token": self.sim.token,
            "proxmox_ca_bundle": Path(self.sim.cafile),
            "node": NODE,
            "vmid": VMID,
            "lock_dir": self.root / "locks",
            "keep_last": 3,
            "keep_daily": 0,
            "keep_weekly": 0,
            "keep_monthly": 0,
        }

    def env(self) -> dict[str, str]:
        import os

        env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
        for key, value in self.settings_values().items():
            env["HUB_" + key.upper()] = str(value.value if isinstance(value, Environment) else value)
        return env

    def stop(self) -> None:
        if self.api is not None and self.api.poll() is None:
            self.api.send_signal(signal.SIGTERM)
            try:
                self.api.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.api.kill()
                self.api.wait(timeout=10)
            self.console.print("[green]✓[/] API stopped")
        if self.services is not None:
            self.services.close()
        if self.sim is not None:
            self.sim.stop()
            self.console.print("[green]✓[/] simulator stopped")
        if self.root.is_dir():  # true as said: the files stay until the next `hubctl lab` resets them
            self.console.print(
                f"   the lab's files (database, simulator state) remain in {self.root} "
                "until the next `hubctl lab` starts afresh",
                markup=False,
            )

    # ---------------------------------------------------------------- steps

    def step(self, title: str) -> None:
        self.console.rule(f"[bold]{title}")

    def checkpoint_table(self) -> None:
        table = Table(show_header=True, header_style="bold")
        for column in ("uuid", "kind", "status", "snapshot", "created"):
            table.add_column(column)
        for cp in self.listed():
            table.add_row(
                cp.uuid[:8], cp.kind, cp.status, cp.snapname[:16] + "…", cp.created_at.strftime("%H:%M:%S")
            )
        self.console.print(table)

    def health(self) -> None:
        from runtime.health import evaluate

        assert self.services is not None
        doc = evaluate(self.services)
        for check in doc["checks"]:
            colour = {"healthy": "green", "degraded": "yellow", "critical": "red"}[check["status"]]
            self.console.print(f"   [{colour}]{check['status']:<9}[/] {check['name']}: {check['detail']}")

    def manual_checkpoint(self) -> CheckpointRecord:
        cp = self.checkpoints.create(kind=CheckpointKind.MANUAL, reason="lab: first checkpoint")
        self.console.print(f"[green]✓[/] checkpoint {cp.uuid} {cp.status} as snapshot {cp.snapname}")
        return cp

    def scheduled_checkpoints(self, count: int) -> None:
        assert self.services is not None
        svc = self.checkpoints
        done = threading.Semaphore(0)

        def job() -> None:
            svc.create(kind=CheckpointKind.SCHEDULED, reason="lab: accelerated daily schedule")
            done.release()

        scheduler = CheckpointScheduler(
            settings=self.services.settings,
            db=self.services.db,
            vmid=VMID,
            job=job,
            trigger=IntervalTrigger(seconds=LAB_SCHEDULE_SECONDS),
        )
        self.console.print(
            f"   production checkpoints daily at 00:00 UTC; the lab's clock runs that every "
            f"{LAB_SCHEDULE_SECONDS}s"
        )
        scheduler.start()
        try:
            for _ in range(count):
                if not done.acquire(timeout=60):
                    raise RuntimeError("the scheduler did not fire")
        finally:
            scheduler.shutdown()
        self.console.print(
            f"[green]✓[/] {count} scheduled checkpoints; retention (keep-last 3) pruned the rest"
        )

    def start_api(self) -> tuple[str, str]:
        """Run the real service (``hubctl serve``) on a loopback port; returns (url, token)."""
        from runtime.tokens import TokenStore

        assert self.services is not None
        token = TokenStore(self.services.ready_db()).create(name="lab", actor="lab")["token"]
        port = self.api_port or _free_port()
        self.api = subprocess.Popen(
            [sys.executable, "-m", "runtime", "serve", "--port", str(port)],
            env=self.env(),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,  # never read: a pipe nobody drains would block the service
            text=True,
            **child_options(),
        )
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.api.poll() is not None:
                raise RuntimeError(f"the API (hubctl serve --port {port}) exited with {self.api.returncode}")
            try:
                if requests.get(url + "/healthz", timeout=1).status_code == 200:
                    break
            # The socket is bound before the start-up pipeline runs: a connection is accepted and then
            # waits (a read timeout) until uvicorn serves, not refused.
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.2)
        else:
            raise RuntimeError("the API did not come up")
        self.console.print(f"[green]✓[/] API at {url} (OpenAPI at {url}/docs), bearer token created")
        return url, token

    def checkpoint_via_api(self, url: str, token: str) -> None:
        headers = {"Authorization": f"Bearer {token}"}
        created = requests.post(
            url + "/api/v1/checkpoints", json={"reason": "lab: through the API"}, headers=headers, timeout=30
        )
        job = created.json()
        self.console.print(f"   POST /api/v1/checkpoints -> {created.status_code}, job {job['id']}")
        deadline = time.monotonic() + 60
        while job["state"] not in ("succeeded", "failed") and time.monotonic() < deadline:
            time.sleep(0.3)
            job = requests.get(url + f"/api/v1/jobs/{job['id']}", headers=headers, timeout=30).json()
        for line in job["progress"]:
            self.console.print(f"   · job: {line}")
        if job["state"] != "succeeded":
            raise RuntimeError(f"the API checkpoint job failed: {job['error']}")
        self.console.print(f"[green]✓[/] job {job['state']}: checkpoint {job['result']['uuid']} completed")

    def crash_and_reconcile(self) -> None:
        assert self.services is not None
        self.console.print(
            "   starting `hubctl checkpoint create` and killing it with SIGKILL after the snapshot request..."
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "runtime", "checkpoint", "create"],
            env=dict(self.env(), HUB_FAILPOINT="checkpoint.snapshot_started"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proc.stderr is not None
        for line in proc.stderr:
            if "failpoint" in line:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        stuck = [c for c in self.listed() if c.status is CheckpointStatus.CREATING]
        self.console.print(f"   [yellow]process killed[/]: {len(stuck)} checkpoint(s) left 'creating'")
        report = Reconciler.build(self.services, actor="lab").run()
        for change in report.changes:
            self.console.print(f"   · reconcile: {change['uuid'][:8]} {change['action']} ({change['why']})")
        self.console.print("[green]✓[/] database and Proxmox agree again")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def export_lines(env: dict[str, str]) -> list[str]:
    """``export`` lines that paste into an interactive shell as they are: every value quoted with
    ``shlex.quote`` (single quotes, so the token's ``!`` is not history expansion), the token last."""
    hub = sorted((k, v) for k, v in env.items() if k.startswith("HUB_"))
    hub.sort(key=lambda kv: kv[0] == "HUB_PROXMOX_API_TOKEN")
    return [f"export {key}={shlex.quote(value)}" for key, value in hub]


def run(*, once: bool, root: Path, console: Console, port: int = 0, api_port: int = 0) -> int:
    lab = Lab(root=root, console=console, port=port, api_port=api_port)
    try:
        console.print(
            Panel.fit(
                "[bold]Hub lab[/]: the runtime against a local Proxmox simulator, on SQLite",
                border_style="cyan",
            )
        )
        lab.start()
        lab.step("1. health")
        lab.health()
        lab.step("2. checkpoint: mark in DB → Proxmox snapshot → verify → complete")
        lab.manual_checkpoint()
        lab.step("3. scheduled checkpoints on an accelerated clock, with retention")
        lab.scheduled_checkpoints(4)
        lab.checkpoint_table()
        lab.step("4. crash mid-checkpoint, then reconcile")
        lab.crash_and_reconcile()
        lab.checkpoint_table()
        lab.step("5. the API: the service (hubctl serve) with in-process jobs")
        url, token = lab.start_api()
        lab.checkpoint_via_api(url, token)
        lab.step("6. health again")
        lab.health()
        machines_act.run(lab)
        recovery_act(lab)
        if once:
            console.print("[bold green]lab walk-through complete[/]")
            return 0
        console.print(f"\nThe lab keeps running. The API: {url} (docs at {url}/docs), with the header")
        console.print(f"  Authorization: Bearer {token}")
        header = shlex.quote(f"Authorization: Bearer {token}")
        console.print(f"  e.g. curl -H {header} {url}/api/v1/checkpoints", markup=False)
        console.print("In another shell, with these settings, try `hubctl checkpoint list`:")
        for line in export_lines(lab.env()):
            console.print(f"  {line}", markup=False, soft_wrap=True)
        console.print("Ctrl-C (or SIGTERM) stops the lab and every process it started.")
        stop = threading.Event()

        def on_signal(_signum: int, _frame: object) -> None:
            stop.set()

        # Installed explicitly: a shell starting us in the background leaves SIGINT ignored.
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, on_signal)
        stop.wait()
        console.print("\nstopping...")
        return 0
    finally:
        lab.stop()
