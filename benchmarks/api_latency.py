"""Benchmark: the API under load (issue 9): per-request CPU, saturation per core, p99 at 200 req/s
open loop (direct and through nginx), idle RSS; a bare FastAPI+uvicorn app (``benchmarks.bare_api``)
and, with ``--before COMMIT``, the Hub's API at that commit, measured in the same run.

    .venv/bin/python -m benchmarks.api_latency --runs 3 --before 6ef2f69 --write docs/performance.md

Set-up: ``hubctl db upgrade`` on a fresh SQLite file, 1000 checkpoint rows inserted with SQLAlchemy
(``runtime.db`` models), the real ``hubctl serve`` on loopback (embedded default: no Redis), a token
from ``hubctl token create``, and Debian's nginx running hub.conf as the tests run it
(tests/deploy/nginx_harness.py: only the listen ports, certificate paths and upstream port differ).
``--before`` extracts that commit (``git archive``) and runs its ``python -m runtime serve`` on the
same database file.

Per process, in this order:

- idle RSS: ``VmRSS`` 3 s after the process answered its first ``/healthz`` (and nothing else);
- saturation: ``--runs`` closed loops of 8 connections for ``--saturate`` seconds each on
  ``GET /api/v1/checkpoints`` (a 50-row page of the 1000), the best kept; the server's own CPU time
  (``/proc/<pid>/stat`` utime + stime) over the window gives CPU ms per request and requests/s per
  core (= requests / CPU seconds). The load generator shares the machine, so wall-clock throughput
  depends on what else runs; CPU per request less so (contention still inflates it, hence the best
  of several). Both are printed.
- latency (``--runs`` times, the Hub direct and through nginx, the bare app direct): an open-loop
  generator (asyncio + aiohttp): request i is due at ``start + i / rate`` whatever happened to the ones
  before, and its latency is counted from that due time, so a stall shows up in the percentiles
  instead of silently lowering the offered rate. Requests are spread round-robin over ``--clients``
  loopback source addresses (127.0.1.x), each with its own keep-alive connections: nginx limits each
  client address to 10 requests/s. Bounded: ``rate * duration`` requests per scenario, 5 s timeout.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import os
import platform
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from runtime.checkpoints.records import CheckpointKind, CheckpointStatus
from runtime.db.models import Checkpoint
from runtime.db.session import Database
from tests.deploy.nginx_harness import (
    NGINX,
    LoopbackNginx,
    LoopbackValues,
    client_context,
    free_port,
    make_self_signed,
)
from tests.deploy.upstream import HUBCTL, create_token, healthy, hub_env, hubctl, stop_process

REPO = Path(__file__).resolve().parents[1]
ROWS = 1000
TARGET_P99_MS = 20.0
REQUEST_TIMEOUT_S = 5.0


@dataclass
class Result:
    name: str
    path: str
    via: str
    rate: float
    latencies_ms: list[float] = field(default_factory=lambda: list[float]())
    statuses: dict[int, int] = field(default_factory=lambda: dict[int, int]())
    errors: int = 0
    wall_s: float = 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        if not ordered:
            return float("nan")
        index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))
        return ordered[index]

    @property
    def ok(self) -> int:
        return self.statuses.get(200, 0)


def seeded_database(root: Path) -> str:
    """``root/hub.db`` migrated by ``hubctl db upgrade`` and seeded with ROWS checkpoints; its URL.
    A failed upgrade ends the benchmark with hubctl's own message (exit 1)."""
    database_url = f"sqlite:///{root / 'hub.db'}"
    upgraded = hubctl("db", "upgrade", database_url=database_url)
    if upgraded.returncode != 0:
        raise SystemExit(upgraded.stderr.strip() or f"hubctl db upgrade exited {upgraded.returncode}")
    seed_rows(database_url, ROWS)
    return database_url


def seed_rows(database_url: str, rows: int) -> None:
    db = Database(database_url)
    now = dt.datetime.now(dt.UTC)
    with db.session() as session:
        for i in range(rows):
            created = now - dt.timedelta(hours=rows - i)
            session.add(
                Checkpoint(
                    uuid=str(uuid.uuid4()),
                    vm_id=100,
                    node="pve1",
                    snapname=f"hub-{uuid.uuid4().hex}",
                    kind=CheckpointKind.SCHEDULED.value,
                    status=CheckpointStatus.COMPLETED.value,
                    reason="benchmark row",
                    created_at=created,
                    completed_at=created + dt.timedelta(seconds=4),
                )
            )
    db.engine.dispose()


async def run_scenario(
    result: Result,
    *,
    base: str,
    headers: dict[str, str],
    rate: float,
    duration: float,
    clients: list[str],
    tls: ssl.SSLContext | None,
) -> None:
    count = int(rate * duration)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    sessions = [
        aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(local_addr=(address, 0), limit=8, ssl=tls if tls else False),
            timeout=timeout,
        )
        for address in clients
    ]
    url = base + result.path

    async def one(i: int, due: float) -> None:
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        try:
            async with sessions[i % len(sessions)].get(url, headers=headers) as response:
                await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError):
            result.errors += 1
            return
        result.latencies_ms.append((time.perf_counter() - due) * 1000)
        result.statuses[status] = result.statuses.get(status, 0) + 1

    try:
        # Warm-up: open each client's connection (TLS handshake) outside the measured window.
        for session in sessions:
            try:
                async with session.get(base + "/healthz") as response:
                    await response.read()
            except (aiohttp.ClientError, TimeoutError):
                pass  # a failed warm-up only leaves that client's connection cold
        await asyncio.sleep(1.0)  # let the per-client limiter's bucket drain after the warm-up
        start = time.perf_counter() + 0.1
        tasks = [asyncio.create_task(one(i, start + i / rate)) for i in range(count)]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=duration + 4 * REQUEST_TIMEOUT_S)
        result.wall_s = time.perf_counter() - start
    finally:
        for session in sessions:
            await session.close()


def settle(port: int, *, timeout: float = 120.0) -> float:
    """Wait (bounded) until the API has worked off any backlog a saturating scenario left behind."""
    started = time.monotonic()
    calm = 0
    while time.monotonic() - started < timeout and calm < 3:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        t0 = time.perf_counter()
        try:
            conn.request("GET", "/healthz")
            conn.getresponse().read()
            calm = calm + 1 if time.perf_counter() - t0 < 0.02 else 0
        except OSError:
            calm = 0
        finally:
            conn.close()
        time.sleep(0.2)
    return time.monotonic() - started


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load_average() -> float:
    return os.getloadavg()[0]


@dataclass
class Saturation:
    requests: int
    wall_s: float
    cpu_s: float

    @property
    def cpu_ms(self) -> float:
        return 1000 * self.cpu_s / self.requests if self.requests else float("nan")

    @property
    def per_core(self) -> float:
        return self.requests / self.cpu_s if self.cpu_s else float("nan")

    @property
    def wall_rate(self) -> float:
        return self.requests / self.wall_s


async def _closed_loop(url: str, headers: dict[str, str], seconds: float, concurrency: int) -> int:
    done = 0
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        stop = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop:
                async with session.get(url, headers=headers) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"GET {url}: {response.status}")
                    done += 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done


def saturate(
    pid: int, url: str, headers: dict[str, str], *, seconds: float, concurrency: int = 8
) -> Saturation:
    asyncio.run(_closed_loop(url, headers, 1.0, concurrency))  # warm-up (connections, caches)
    cpu0, t0 = cpu_seconds(pid), time.perf_counter()
    count = asyncio.run(_closed_loop(url, headers, seconds, concurrency))
    return Saturation(requests=count, wall_s=time.perf_counter() - t0, cpu_s=cpu_seconds(pid) - cpu0)


@dataclass
class Server:
    """An API process: the Hub now, the Hub at ``--before``, or the bare app."""

    name: str
    command: list[str]
    env: dict[str, str]
    log: Path
    cwd: Path = REPO
    port: int = 0
    process: subprocess.Popen[bytes] | None = None

    def start(self, *, timeout: float = 60.0) -> None:
        self.port = free_port()
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*self.command, "--port", str(self.port)],
                env=self.env,
                cwd=self.cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            if healthy(self.port):
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"{self.name} not healthy after {timeout} s; see {self.log}")

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def stop(self) -> None:
        stop_process(self.process)
        self.process = None


@dataclass
class Measured:
    name: str
    rss_mib: float = float("nan")
    saturation: Saturation | None = None
    latency: list[Result] = field(default_factory=lambda: list[Result]())


def _p99s(results: list[Result]) -> str:
    return " / ".join(f"{r.pct(99):.1f}" for r in results) or "-"


def _clean(results: list[Result]) -> bool:
    return all(not r.errors and r.ok == len(r.latencies_ms) for r in results)


def render(
    measured: dict[str, Measured], *, args: argparse.Namespace, nginx_version: str, loads: list[float]
) -> str:
    hub, bare = measured["hub"], measured["bare"]
    before = measured.get("before")
    lines = [
        f"Run on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC: {os.cpu_count()} CPUs shared with other work "
        f"(1-min load average {min(loads):.1f}-{max(loads):.1f} during the run), Python "
        f"{platform.python_version()}, {nginx_version}; SQLite, 1000 rows, 50-row pages; load generator on "
        "the same CPUs.",
        "",
        f"| process | idle RSS | CPU per request (best of {args.runs}) | saturation per core | "
        "closed-loop req/s (wall) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for m in measured.values():
        sat = m.saturation
        assert sat is not None
        lines.append(
            f"| {m.name} | {m.rss_mib:.0f} MiB | {sat.cpu_ms:.2f} ms | {sat.per_core:.0f} req/s | "
            f"{sat.wall_rate:.0f} |"
        )
    lines += [
        "",
        f"p99 of `GET /api/v1/checkpoints` at {args.rate:g} req/s open loop, {args.duration:g} s per run, "
        f"{args.runs} runs (ms, run by run; every request answered 200 unless said):",
        "",
        "| process | via | p99 per run | p50 (last run) | all requests 200 |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for m in measured.values():
        for via in dict.fromkeys(r.via for r in m.latency):
            runs = [r for r in m.latency if r.via == via]
            lines.append(
                f"| {m.name} | {via} | {_p99s(runs)} | {runs[-1].pct(50):.1f} | "
                f"{'yes' if _clean(runs) else '**no**'} |"
            )
    hub_sat, bare_sat = hub.saturation, bare.saturation
    assert hub_sat is not None and bare_sat is not None
    rows = [
        "",
        "| goal (issue 9) | figure | baseline, same run | ratio | met |",
        "| --- | --- | --- | ---: | --- |",
    ]
    for via in ("direct", "nginx (TLS)"):
        runs = [r for r in hub.latency if r.via == via]
        met = sum(
            1 for r in runs if r.pct(99) < TARGET_P99_MS and not r.errors and r.ok == len(r.latencies_ms)
        )
        rows.append(
            f"| p99 < {TARGET_P99_MS:g} ms at {args.rate:g} req/s, {via}, {len(runs)} of {len(runs)} runs | "
            f"{_p99s(runs)} ms | bare app direct: {_p99s([r for r in bare.latency])} ms | - | "
            f"{'yes' if runs and met == len(runs) else f'**no** ({met} of {len(runs)})'} |"
        )
    if before is not None and before.saturation is not None:
        ratio = hub_sat.per_core / before.saturation.per_core
        rows.append(
            f"| saturation per core >= 4x today's | {hub_sat.per_core:.0f} req/s | {before.name}: "
            f"{before.saturation.per_core:.0f} req/s | {ratio:.2f}x | {'yes' if ratio >= 4 else '**no**'} |"
        )
    else:
        rows.append(
            f"| saturation per core >= 4x today's | {hub_sat.per_core:.0f} req/s | "
            "(run with --before) | - | - |"
        )
    rss_ratio = hub.rss_mib / bare.rss_mib
    rows.append(
        f"| idle RSS of `hubctl serve` <= 1.5x a bare FastAPI+uvicorn app | {hub.rss_mib:.0f} MiB | "
        f"bare app {bare.rss_mib:.0f} MiB | {rss_ratio:.2f}x | {'yes' if rss_ratio <= 1.5 else '**no**'} |"
    )
    rows.append(
        f"| (for scale) CPU per request over the bare app's | {hub_sat.cpu_ms:.2f} ms | bare app "
        f"{bare_sat.cpu_ms:.2f} ms | {hub_sat.cpu_ms / bare_sat.cpu_ms:.2f}x | - |"
    )
    return "\n".join(lines + rows) + "\n"


BEGIN, END = "<!-- api_latency:begin -->", "<!-- api_latency:end -->"
RSS_BEGIN, RSS_END = "<!-- api_rss:begin -->", "<!-- api_rss:end -->"


def write_section(path: Path, text: str, *, begin: str = BEGIN, end: str = END) -> None:
    doc = path.read_text()
    if begin not in doc or end not in doc:
        raise SystemExit(f"{path}: no {begin} ... {end} markers to write between")
    head, rest = doc.split(begin, 1)
    _, tail = rest.split(end, 1)
    path.write_text(f"{head}{begin}\n{text}{end}{tail}")


def rss_only(*, runs: int, write: Path | None) -> int:
    """Idle RSS only (the same reading as the full run: ``VmRSS`` 3 s after the first ``/healthz``),
    the bare app and ``hubctl serve`` alternately, ``runs`` fresh processes each; median kept."""
    loads = [load_average()]
    samples: dict[str, list[float]] = {"bare": [], "hub": []}
    with tempfile.TemporaryDirectory(prefix="hub-bench-rss-") as tmp:
        root = Path(tmp)
        database_url = seeded_database(root)
        env = hub_env(database_url)
        python = str(REPO / ".venv" / "bin" / "python")
        bare_cmd = [python, "-m", "benchmarks.bare_api"]
        hub_cmd = [str(HUBCTL), "serve", "--host", "127.0.0.1"]
        servers = {
            "bare": Server("bare FastAPI+uvicorn app", bare_cmd, env, root / "bare.log"),
            "hub": Server("`hubctl serve`", hub_cmd, env, root / "hub.log"),
        }
        for run in range(runs):
            for key, server in servers.items():
                server.start()
                try:
                    time.sleep(3.0)
                    samples[key].append(rss_mib(server.pid))
                finally:
                    server.stop()
                loads.append(load_average())
            print(
                f"api_latency --rss-only: run {run + 1}: bare {samples['bare'][-1]:.1f} MiB, "
                f"hub {samples['hub'][-1]:.1f} MiB",
                flush=True,
            )
    bare, hub = statistics.median(samples["bare"]), statistics.median(samples["hub"])
    ratio = hub / bare

    def each(key: str) -> str:
        return " / ".join(f"{v:.1f}" for v in samples[key])

    report = "\n".join(
        [
            f"Run on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC (`--rss-only --runs {runs}`): "
            f"{os.cpu_count()} CPUs shared with other work (1-min load average "
            f"{min(loads):.1f}-{max(loads):.1f}), Python {platform.python_version()}; SQLite, "
            f"{ROWS} rows, no Proxmox; `VmRSS` 3 s after the first `/healthz`, fresh processes, "
            "alternately.",
            "",
            "| process | idle RSS, median | each run (MiB) |",
            "| --- | ---: | --- |",
            f"| {servers['bare'].name} | {bare:.1f} MiB | {each('bare')} |",
            f"| {servers['hub'].name} | {hub:.1f} MiB | {each('hub')} |",
            "",
            "| goal (issue 9) | figure | baseline, same run | ratio | met |",
            "| --- | --- | --- | ---: | --- |",
            f"| idle RSS of `hubctl serve` <= 1.5x a bare FastAPI+uvicorn app | {hub:.1f} MiB | "
            f"bare app {bare:.1f} MiB | {ratio:.2f}x | {'yes' if ratio <= 1.5 else '**no**'} |",
        ]
    )
    print(report)
    if write:
        write_section(write, report + "\n", begin=RSS_BEGIN, end=RSS_END)
    return 0


def _database_for(tree: Path, database_url: str, path: Path) -> str:
    """A copy of the benchmark's database at the schema of ``tree``'s code: the same rows and token,
    migrated down (by today's migrations, which know every later step) to the newest revision the
    older code has; that code refuses a database ahead of it."""
    import sqlite3

    from alembic import command

    from runtime.db import Database
    from runtime.db.session import read_head_revision

    source = sqlite3.connect(database_url.removeprefix("sqlite:///"))
    target = sqlite3.connect(path)
    with target:
        source.backup(target)
    source.close()
    target.close()
    url = f"sqlite:///{path}"
    head = read_head_revision(tree / "runtime" / "db" / "migrations" / "versions")
    if head is None:
        raise SystemExit(f"{tree}: cannot read the migrations' head")
    db = Database(url)
    command.downgrade(db.alembic_config(), head)
    db.engine.dispose()
    return url


def _extract(commit: str, into: Path) -> Path:
    into.mkdir()
    archive = subprocess.run(["git", "archive", commit], cwd=REPO, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per latency run (default 20)")
    parser.add_argument("--runs", type=int, default=3, help="latency runs per process and path (default 3)")
    parser.add_argument("--saturate", type=float, default=8.0, help="seconds of closed loop (default 8)")
    parser.add_argument("--clients", type=int, default=40, help="loopback client addresses (default 40)")
    parser.add_argument("--before", help="also measure the Hub's API at this commit (git archive)")
    parser.add_argument(
        "--write", type=Path, help="write the tables between the api_latency markers of this file"
    )
    parser.add_argument(
        "--rss-only",
        action="store_true",
        help="only idle RSS: the bare app and `hubctl serve` started --runs times each, alternately "
        "(no load, no nginx; with --write, the api_rss markers)",
    )
    args = parser.parse_args(argv)
    if args.rss_only:
        if not 1 <= args.runs <= 10:
            parser.error("bounded: --runs in [1, 10]")
        return rss_only(runs=args.runs, write=args.write)
    if not (0 < args.rate <= 1000 and 0 < args.duration <= 120 and 1 <= args.runs <= 10):
        parser.error("bounded: --rate up to 1000, --duration in (0, 120], --runs in [1, 10]")
    if not 0 < args.saturate <= 60:
        parser.error("bounded: --saturate in (0, 60]")
    if not 1 <= args.clients <= 250 or args.rate / args.clients >= 10:
        parser.error("--clients in [1, 250], and rate / clients under nginx's 10 r/s per client")
    if not NGINX.is_file():
        print(f"{NGINX} is missing: install nginx-light (scripts/setup.sh --system)", file=sys.stderr)
        return 2

    version = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True, check=False).stderr.strip()
    clients = [f"127.0.1.{i}" for i in range(1, args.clients + 1)]
    loads = [load_average()]
    measured: dict[str, Measured] = {}
    with tempfile.TemporaryDirectory(prefix="hub-bench-api-") as tmp:
        root = Path(tmp)
        database_url = seeded_database(root)
        token = create_token(database_url=database_url, name="bench")
        auth = {"Authorization": f"Bearer {token}"}
        env = hub_env(database_url)
        python = str(REPO / ".venv" / "bin" / "python")
        servers = [
            Server("bare FastAPI+uvicorn app", [python, "-m", "benchmarks.bare_api"], env, root / "bare.log"),
            Server("`hubctl serve`", [str(HUBCTL), "serve", "--host", "127.0.0.1"], env, root / "hub.log"),
        ]
        keys = ["bare", "hub"]
        if args.before:
            old = _extract(args.before, root / "before")
            before_url = _database_for(old, database_url, root / "before.db")
            servers.append(
                Server(
                    f"`hubctl serve` at {args.before}",
                    [python, "-m", "runtime", "serve", "--host", "127.0.0.1"],
                    {**env, "HUB_DATABASE_URL": before_url, "PYTHONPATH": str(old)},
                    root / "before.log",
                    cwd=old,
                )
            )
            keys.append("before")
        cert, key = make_self_signed(root / "tls")
        for name, server in zip(keys, servers, strict=True):
            m = measured[name] = Measured(server.name)
            server.start()
            nginx = LoopbackNginx(prefix=root / f"nginx-{name}", values=LoopbackValues(0, 0, 0, cert, key))
            try:
                time.sleep(3.0)
                m.rss_mib = rss_mib(server.pid)
                base = f"http://127.0.0.1:{server.port}"
                # Best of --runs: contention from other work only ever adds CPU per request.
                m.saturation = min(
                    (
                        saturate(server.pid, base + "/api/v1/checkpoints", auth, seconds=args.saturate)
                        for _ in range(args.runs)
                    ),
                    key=lambda sat: sat.cpu_ms,
                )
                sat = m.saturation
                print(
                    f"api_latency: {server.name}: RSS {m.rss_mib:.0f} MiB; {sat.cpu_ms:.2f} ms CPU/request, "
                    f"{sat.per_core:.0f} req/s per core, {sat.wall_rate:.0f} req/s wall",
                    flush=True,
                )
                loads.append(load_average())
                targets: list[tuple[str, str, ssl.SSLContext | None]] = [("direct", base, None)]
                if name == "hub":
                    nginx.values = LoopbackValues(
                        http_port=free_port(),
                        https_port=free_port(),
                        upstream_port=server.port,
                        cert=cert,
                        key=key,
                    )
                    nginx.prefix.mkdir()
                    nginx.write()
                    nginx.start()
                    targets.append(
                        ("nginx (TLS)", f"https://127.0.0.1:{nginx.values.https_port}", client_context(cert))
                    )
                elif name == "before":
                    targets = []  # its latency is issue 9's own figure; saturation and RSS are compared
                for run in range(args.runs):
                    for via, url, tls in targets:
                        settle(server.port)
                        result = Result(
                            name=f"{name} {via}", path="/api/v1/checkpoints", via=via, rate=args.rate
                        )
                        asyncio.run(
                            run_scenario(
                                result,
                                base=url,
                                headers=auth,
                                rate=args.rate,
                                duration=args.duration,
                                clients=clients,
                                tls=tls,
                            )
                        )
                        loads.append(load_average())
                        print(
                            f"  run {run + 1} {via}: p50 {result.pct(50):.2f} ms  p99 {result.pct(99):.2f} ms"
                            f"  statuses {result.statuses}  errors {result.errors}  load {loads[-1]:.1f}",
                            flush=True,
                        )
                        m.latency.append(result)
            finally:
                nginx.stop()
                server.stop()
    report = render(measured, args=args, nginx_version=version, loads=loads)
    print(report)
    if args.write:
        write_section(args.write, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
