"""The API that nginx proxies to in tests and the benchmark: the real ``hubctl serve`` on loopback.

It runs on the embedded default (a SQLite file, no Redis) as a separate process, exactly as an operator
would start it, and is stopped with SIGTERM (its graceful shutdown path).
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from tests.deploy.nginx_harness import REPO_ROOT, HarnessError, free_port

HUBCTL = REPO_ROOT / ".venv" / "bin" / "hubctl"


def hub_env(database_url: str) -> dict[str, str]:
    """The process environment with no HUB_* setting leaking in from the caller, then ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_DATABASE_URL"] = database_url
    return env


def hubctl(*args: str, database_url: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(HUBCTL), *args],
        env=hub_env(database_url),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def create_token(*, database_url: str, name: str) -> str:
    result = hubctl("token", "create", "--name", name, "--json", database_url=database_url)
    if result.returncode != 0:
        raise HarnessError(f"hubctl token create failed ({result.returncode}): {result.stderr}")
    token: str = json.loads(result.stdout)["token"]
    return token


def healthy(port: int) -> bool:
    """``GET /healthz`` on loopback answers 200."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/healthz")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


def stop_process(process: subprocess.Popen[bytes] | None) -> None:
    """SIGTERM (a graceful stop), then SIGKILL after 20 s."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


@dataclass
class HubServer:
    """``hubctl serve --host 127.0.0.1 --port <port>`` with its output in ``log``."""

    database_url: str
    log: Path
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60.0) -> None:
        self.port = self.port or free_port()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [str(HUBCTL), "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                env=hub_env(self.database_url),
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise HarnessError(f"hubctl serve exited with {self.process.returncode}:\n{self.tail()}")
            if healthy(self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise HarnessError(f"hubctl serve not healthy after {timeout} s:\n{self.tail()}")

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None

    def tail(self, lines: int = 40) -> str:
        if not self.log.exists():
            return "(no output)"
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
