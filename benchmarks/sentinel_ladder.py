"""Benchmark: the sentinel's reaction time and the ladder's own overhead, with instant Proxmox tasks.

    .venv/bin/python -m benchmarks.sentinel_ladder [--rounds 10] [--write docs/performance.md]

Set-up per round: fakepve in this process over TLS (tasks finish at once), four Hub checkpoints, a
Hub ``/readyz`` on 127.0.0.1 that answers critical until the VM has been rolled back to the third
checkpoint tried. So each run walks rung 0 (emergency snapshot), rung 1 (restart, gate fails), and
three rung-2 rollbacks (two gates fail, the third passes).

Measured:
- reaction: from the probe that settles the verdict critical (the K-th) returning, to the first
  Proxmox task issued (the emergency snapshot's POST, timed by the client's observer); target < 2 s;
- overhead: the whole run's wall time minus the time spent in health gates (probing and waiting),
  i.e. what the sentinel itself costs: Proxmox requests (tasks are instant here), its database
  writes, the lease and journal writes on the VM's description.
"""

from __future__ import annotations

import argparse
import json
import logging
import statistics
import tempfile
import threading
import time
import uuid as uuidlib
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from benchmarks.docs_section import write_section
from benchmarks.fakepve_thread import TOKEN_ID, TOKEN_SECRET, ServedPve
from hubcore.proxmox import ProxmoxClient
from hubcore.proxmox.errors import ProxmoxError
from runtime.checkpoints.naming import describe, snapname_for
from runtime.sentinel.alerts import Alerter
from runtime.sentinel.probe import Probe, readiness
from runtime.sentinel.service import Policy, Sentinel
from runtime.sentinel.store import SentinelStore

K = 3
TASK_KINDS = {"create_snapshot", "take_snapshot", "shutdown", "stop", "start", "rollback", "resume"}


class Observer:
    def __init__(self) -> None:
        self.first_task: float | None = None
        self.requests = 0

    def on_request(self, kind: str, *, seconds: float, error: str | None) -> None:
        self.requests += 1
        if self.first_task is None and kind in TASK_KINDS:
            self.first_task = time.perf_counter() - seconds

    def on_retry(self, kind: str, *, attempt: int, delay: float, error: ProxmoxError) -> None:
        pass


class TimedSentinel(Sentinel):
    gate_seconds = 0.0

    def _gate(self) -> tuple[bool, str]:
        began = time.perf_counter()
        try:
            return super()._gate()
        finally:
            self.gate_seconds += time.perf_counter() - began


def _checkpoint(pve: Any, created: datetime) -> str:
    uuid = str(uuidlib.uuid4())
    name = snapname_for(uuid)
    vm = pve.vm(100)
    snap = {k: v for k, v in vm.config.items() if k not in ("lock", "description", "parent")}
    snap.update(
        snaptime=int(created.timestamp()),
        description=describe(uuid=uuid, kind="scheduled", created_at=created, reason=None),
    )
    vm.snapshots[name] = snap
    return name


def _serve_readyz(pve: Any, good: str) -> ThreadingHTTPServer:
    class Readyz(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            last = next(
                (p for m, p, _b in reversed(pve.requests) if m == "POST" and p.endswith("/rollback")), ""
            )
            healthy = f"/snapshot/{good}/rollback" in last and pve.vm(100).status == "running"
            body = json.dumps({"status": "healthy" if healthy else "critical"}).encode()
            self.send_response(200 if healthy else 503)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def one_round(root: Path) -> dict[str, float]:
    served = ServedPve(root)
    try:
        now = datetime.now(UTC)
        names = [_checkpoint(served.pve, now - timedelta(hours=h)) for h in (1, 2, 3, 4)]
        server = _serve_readyz(served.pve, good=names[2])
        url = f"http://127.0.0.1:{server.server_address[1]}"
        observer = Observer()
        user, _, name = TOKEN_ID.partition("!")
        client = ProxmoxClient(
            base_url=served.url,
            token_user=user,
            token_name=name,
            token_secret=TOKEN_SECRET,
            verify=served.cafile,
            observer=observer,
        )
        settled: list[float] = []

        def probe(hub_url: str, timeout: float) -> Probe:
            answer = readiness(hub_url, timeout=timeout)
            settled.append(time.perf_counter())
            return answer

        sentinel = TimedSentinel(
            vmid=100,
            policy=Policy(
                hub_url=url, gate_timeout=0.5, probe_interval=0.1, critical_probes=K, task_timeout=60
            ),
            store=SentinelStore.open(f"sqlite:///{root / 'sentinel.db'}"),
            proxmox=client,
            alerter=Alerter(None),
            probe=probe,
        )
        for _ in range(K - 1):
            assert sentinel.tick() is None
        began = time.perf_counter()
        outcome = sentinel.tick()
        total = time.perf_counter() - began
        assert outcome is not None and outcome.result == "healthy", outcome
        assert observer.first_task is not None
        server.shutdown()
        server.server_close()
        sentinel.store.close()
        return {
            "reaction": observer.first_task - settled[K - 1],
            "total": total,
            "gates": sentinel.gate_seconds,
            "overhead": total - sentinel.gate_seconds,
            "requests": float(observer.requests),
        }
    finally:
        served.stop()


def _stats(values: list[float]) -> str:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return f"{statistics.median(ordered) * 1000:.0f} / {p90 * 1000:.0f} ms"


def render(rows: list[dict[str, float]]) -> str:
    reaction = [r["reaction"] for r in rows]
    lines = [
        f"| measure (median / p90 over {len(rows)} runs) | value | goal |",
        "| --- | --- | --- |",
        f"| settled critical -> first Proxmox task issued | {_stats(reaction)} | < 2 s: "
        + ("met" if max(reaction) < 2 else "NOT met")
        + " |",
        f"| whole ladder run (5 steps, 4 gates) | {_stats([r['total'] for r in rows])} | - |",
        f"| of which health gates (probing, waiting) | {_stats([r['gates'] for r in rows])} | - |",
        f"| ladder overhead beyond tasks and gates | {_stats([r['overhead'] for r in rows])} | - |",
        f"| Proxmox requests per run | {statistics.median([r['requests'] for r in rows]):.0f} | - |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    logging.getLogger("hub").setLevel(logging.ERROR)  # the ladder's own log lines, not the table
    rows = []
    for _ in range(args.rounds):
        with tempfile.TemporaryDirectory() as tmp:
            rows.append(one_round(Path(tmp)))
    table = render(rows)
    print(table)
    if args.write:
        write_section(args.write, "<!-- sentinel-ladder:start -->", "<!-- sentinel-ladder:end -->", table)


if __name__ == "__main__":
    main()
