"""Benchmark: API latency through nginx (the shipped deploy/nginx/hub.conf, TLS) and direct, same run.

    .venv/bin/python -m benchmarks.api_latency [--rate 200] [--duration 20] [--write docs/benchmarks-api.md]

Set-up: ``hubctl db upgrade`` on a fresh SQLite file, 1000 checkpoint rows inserted with SQLAlchemy
(``runtime.db`` models), the real ``hubctl serve`` on loopback (embedded default: no Redis), a token
from ``hubctl token create``, and Debian's nginx running hub.conf as the tests run it
(tests/deploy/nginx_harness.py: only the listen ports, certificate paths and upstream port differ).

Load: an open-loop generator (asyncio + aiohttp): request i is due at ``start + i / rate`` whatever
happened to the ones before, and its latency is counted from that due time, so a stall shows up in the
percentiles instead of silently lowering the offered rate. Requests are spread round-robin over
``--clients`` loopback source addresses (127.0.1.x), each with its own keep-alive connections: nginx
limits each client address to 10 requests/s, and 200 requests/s from one address would measure the
rate limiter's 429s, not the proxy. Four scenarios run one after the other: GET /healthz and
GET /api/v1/checkpoints (default page of 50 out of 1000 rows, with a bearer token), each direct to
the API and through nginx. Bounded: ``rate * duration`` requests per scenario, 5 s timeout each.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import http.client
import os
import platform
import ssl
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
from tests.deploy.upstream import HubServer, create_token, hubctl

ROWS = 1000
TARGET_P99_MS = 50.0
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


def render(results: list[Result], *, duration: float, clients: int, nginx_version: str) -> str:
    lines = [
        "# API latency: through nginx vs direct",
        "",
        "Produced by `.venv/bin/python -m benchmarks.api_latency --write docs/benchmarks-api.md` "
        f"on {dt.datetime.now(dt.UTC):%Y-%m-%d} ({os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"{nginx_version}). The method is in the module docstring: the real `hubctl serve` on the "
        "embedded default (SQLite, no Redis) with 1000 checkpoint rows; the shipped "
        "`deploy/nginx/hub.conf` (TLS, keep-alive to the client and to the API); an open-loop "
        f"load for {duration:g} s per scenario from an asyncio/aiohttp generator on the same machine, "
        f"spread over {clients} loopback client addresses (so nginx's per-client limit of 10 r/s is "
        "not what is measured). Latency counts from each request's due time; a request without an "
        f"answer within {REQUEST_TIMEOUT_S:g} s is an error. Load generator, nginx and the API share "
        "the same CPUs.",
        "",
        "| request | rate/s | via | requests | 200 | other / errors | p50 ms | p99 ms | max ms "
        "| p99 < 50 ms |",
        "| --- | ---: | --- | ---: | ---: | --- | ---: | ---: | ---: | --- |",
    ]
    for r in results:
        other = {k: v for k, v in r.statuses.items() if k != 200}
        other_text = ", ".join(f"{k}: {v}" for k, v in sorted(other.items())) or "-"
        if r.errors:
            other_text += f"; errors (timeouts): {r.errors}"
        p99 = r.pct(99)
        met = p99 < TARGET_P99_MS and not r.errors and not other
        lines.append(
            f"| GET {r.path} | {r.rate:g} | {r.via} | {len(r.latencies_ms) + r.errors} | {r.ok} | "
            f"{other_text} | "
            f"{r.pct(50):.2f} | {p99:.2f} | {max(r.latencies_ms, default=float('nan')):.2f} | "
            f"{'yes' if met else '**no**'} |"
        )
    lines += [
        "",
        "Ratios (through nginx / direct, same request and rate):",
        "",
        "| request | rate/s | p50 ratio | p99 ratio | p50 added ms | p99 added ms |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    by = {(r.path, r.rate, r.via): r for r in results}
    for path, rate in dict.fromkeys((r.path, r.rate) for r in results):
        direct, proxied = by[(path, rate, "direct")], by[(path, rate, "nginx (TLS)")]
        p50, p99 = (direct.pct(50), proxied.pct(50)), (direct.pct(99), proxied.pct(99))
        lines.append(
            f"| GET {path} | {rate:g} | {p50[1] / p50[0]:.2f} | {p99[1] / p99[0]:.2f} | "
            f"{p50[1] - p50[0]:+.2f} | {p99[1] - p99[0]:+.2f} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second (default 200)")
    parser.add_argument(
        "--low-rate",
        type=float,
        default=50.0,
        help="also GET /api/v1/checkpoints at this rate (0: skip): nginx's share below saturation",
    )
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per scenario (default 20)")
    parser.add_argument("--clients", type=int, default=40, help="loopback client addresses (default 40)")
    parser.add_argument("--write", type=Path, help="write the Markdown report here")
    args = parser.parse_args(argv)
    if not (0 < args.rate <= 1000 and 0 <= args.low_rate <= 1000 and 0 < args.duration <= 120):
        parser.error("bounded: --rate and --low-rate up to 1000, --duration in (0, 120]")
    if not 1 <= args.clients <= 250 or max(args.rate, args.low_rate) / args.clients >= 10:
        parser.error("--clients in [1, 250], and rate / clients under nginx's 10 r/s per client")
    if not NGINX.is_file():
        print(f"{NGINX} is missing: install nginx-light (scripts/setup.sh --system)", file=sys.stderr)
        return 2

    version = subprocess.run([str(NGINX), "-v"], capture_output=True, text=True, check=False).stderr.strip()
    clients = [f"127.0.1.{i}" for i in range(1, args.clients + 1)]
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="hub-bench-api-") as tmp:
        root = Path(tmp)
        database_url = f"sqlite:///{root / 'hub.db'}"
        upgraded = hubctl("db", "upgrade", database_url=database_url)
        if upgraded.returncode != 0:
            print(upgraded.stderr, file=sys.stderr)
            return 1
        seed_rows(database_url, ROWS)
        server = HubServer(database_url=database_url, log=root / "serve.log")
        cert, key = make_self_signed(root / "tls")
        nginx = LoopbackNginx(prefix=root / "nginx", values=LoopbackValues(0, 0, 0, cert, key))
        try:
            server.start()
            nginx.values = LoopbackValues(
                http_port=free_port(), https_port=free_port(), upstream_port=server.port, cert=cert, key=key
            )
            nginx.prefix.mkdir()
            nginx.write()
            nginx.start()
            token = create_token(database_url=database_url, name="bench")
            auth = {"Authorization": f"Bearer {token}"}
            plan: list[tuple[str, dict[str, str], float]] = [
                ("/healthz", {}, args.rate),
                ("/api/v1/checkpoints", auth, args.rate),
            ]
            if args.low_rate:
                plan.append(("/api/v1/checkpoints", auth, args.low_rate))
            targets = (
                ("direct", f"http://127.0.0.1:{server.port}", None),
                ("nginx (TLS)", f"https://127.0.0.1:{nginx.values.https_port}", client_context(cert)),
            )
            for path, headers, rate in plan:
                for via, base, tls in targets:
                    waited = settle(server.port)
                    result = Result(name=f"{path} {via}", path=path, via=via, rate=rate)
                    print(f"api_latency: GET {path} {via} {rate:g}/s x {args.duration:g} s", flush=True)
                    asyncio.run(
                        run_scenario(
                            result,
                            base=base,
                            headers=headers,
                            rate=rate,
                            duration=args.duration,
                            clients=clients,
                            tls=tls,
                        )
                    )
                    print(
                        f"  p50 {result.pct(50):.2f} ms  p99 {result.pct(99):.2f} ms"
                        f"  statuses {result.statuses}  errors {result.errors}  (settled {waited:.1f} s)",
                        flush=True,
                    )
                    results.append(result)
        finally:
            nginx.stop()
            server.stop()
    report = render(results, duration=args.duration, clients=args.clients, nginx_version=version)
    print(report)
    if args.write:
        args.write.write_text(report)
    failed = [r.name for r in results if r.ok != int(r.rate * args.duration)]
    if failed:
        print(f"api_latency: not every request got 200 in: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
