"""Run the real ``hubctl serve`` as a process for API tests, and talk to it over loopback."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import requests

from tests.support.hubenv import HubEnv


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Service:
    env: HubEnv
    port: int
    token: str
    process: subprocess.Popen[str] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, **extra: str) -> None:
        self.process = self.env.spawn("serve", "--port", str(self.port), **extra)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"serve exited: {self.process.communicate()[1]}")
            try:
                if requests.get(self.url + "/healthz", timeout=5).status_code == 200:
                    return
            except requests.RequestException:  # not listening yet, or slow on a loaded machine
                pass
            time.sleep(0.1)
        # Never leave it running: a stray serve would take other tests' jobs.
        self.process.kill()
        self.process.communicate(timeout=30)
        self.process = None
        raise AssertionError("serve did not come up")

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        assert self.process is not None
        self.process.send_signal(sig)
        _, err = self.process.communicate(timeout=60)
        code = self.process.returncode
        self.process = None
        return code, err

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.token}"}

    def get(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("headers", self.headers())
        return requests.get(self.url + path, timeout=30, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        kw.setdefault("headers", self.headers())
        return requests.post(self.url + path, json=body, timeout=30, **kw)

    def delete(self, path: str, **kw: Any) -> requests.Response:
        kw.setdefault("headers", self.headers())
        return requests.delete(self.url + path, timeout=30, **kw)

    def wait_job(self, job_id: str, *, timeout: float = 60) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.get(f"/api/v1/jobs/{job_id}").json()
            if job["state"] in ("succeeded", "failed"):
                return job
            time.sleep(0.1)
        raise AssertionError(f"job {job_id} did not finish: {job}")


def make_token(env: HubEnv, name: str) -> str:
    result = env.run("token", "create", "--name", name, "--json")
    assert result.returncode == 0, result.stderr
    return str(json.loads(result.stdout)["token"])


def serve(env: HubEnv) -> Iterator[Service]:
    """A migrated Hub's real `hubctl serve` for one test (a generator for fixtures), always stopped."""
    env.services().db.upgrade()
    svc = Service(env=env, port=free_port(), token=make_token(env, "tests"))
    svc.start(HUB_HEALTH_INTERVAL_SECONDS="1")
    try:
        yield svc
    finally:
        if svc.process is not None:
            svc.stop()
