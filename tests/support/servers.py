"""Private PostgreSQL and Redis servers for the tests that stop and restart them.

The shared servers the test command starts must never be restarted by one test (others use them), so
a test about an outage gets its own: same Debian binaries, its own port and data directory under the
test's tmp dir, loopback only, and stopped whatever happens.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path


def _free_port() -> int:
    """A free port below the kernel's ephemeral range. These servers are stopped and started again on
    the same port: a port the kernel hands out for outgoing connections could be taken by one of
    them (any process's) while the server is down, and the restart would fail to bind."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(1024, low - 12000), low)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")


def _pg_bin() -> Path:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not candidates:
        raise RuntimeError("PostgreSQL server binaries not found (scripts/setup.sh --system installs them)")
    return candidates[-1]


def _as_postgres(args: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *args] if os.getuid() == 0 else args


@dataclass
class PrivatePostgres:
    data: Path
    port: int

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        done = subprocess.run(
            _as_postgres([str(_pg_bin() / "pg_ctl"), "-D", str(self.data), *args]),
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.returncode:
            log = self.data.parent / "server.log"
            tail = log.read_text(errors="replace").splitlines()[-15:] if log.exists() else []
            raise RuntimeError(
                f"pg_ctl {' '.join(args[-3:])} failed ({done.returncode}): {done.stdout} {done.stderr}\n"
                + "\n".join(tail)
            )

    def start(self) -> None:
        self._ctl(
            "-l",
            str(self.data.parent / "server.log"),
            "-w",
            "start",
            "-o",
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data.parent} -c fsync=off",
        )

    def stop(self) -> None:
        self._ctl("-m", "fast", "-w", "stop")


@contextmanager
def private_postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL server of the test's own, to stop and start at will.

    Its directory is made here under the system temp dir, not under pytest's ``tmp_path``: pytest
    sets ``/tmp/pytest-of-<user>`` back to mode 0700 whenever any pytest session starts, which locks
    the ``postgres`` user out of a data directory below it between a stop and the next start (seen as
    "could not access directory ... Permission denied" when another session ran beside this one)."""
    root = Path(tempfile.mkdtemp(prefix="hub-test-pg-"))
    data = root / "data"
    if os.getuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        root.chmod(0o700)
    try:
        subprocess.run(
            _as_postgres(
                [str(_pg_bin() / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust", "--no-sync"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        server = PrivatePostgres(data=data, port=_free_port())
        server.start()
        try:
            yield server
        finally:
            with contextlib.suppress(RuntimeError):  # already stopped by the test
                server.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)


@dataclass
class PrivateRedis:
    root: Path
    port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.root),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("the private redis-server did not start")

    def stop(self) -> None:
        """SHUTDOWN (the append-only file keeps every key, the way a restart would find them)."""
        if self.process is not None and self.process.poll() is None:
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "shutdown"], capture_output=True, timeout=30, check=False
            )
            self.process.wait(timeout=30)
        self.process = None


@contextmanager
def private_redis(root: Path) -> Iterator[PrivateRedis]:
    root.mkdir(parents=True, exist_ok=True)
    server = PrivateRedis(root=root, port=_free_port())
    server.start()
    try:
        yield server
    finally:
        if server.process is not None:
            server.process.kill()
            server.process.wait(timeout=30)
