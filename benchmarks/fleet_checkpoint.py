"""Fleet checkpoint of 200 VMs across 3 nodes, against one-by-one and against the ideal, in one run.

    .venv/bin/python -m benchmarks.fleet_checkpoint --write docs/performance.md
    .venv/bin/python -m benchmarks.fleet_checkpoint --database-url postgresql+psycopg://...  # optional

Everything runs on fakepve's clock (``time_scale``): a snapshot task takes ``SNAPSHOT_SECS`` PVE
seconds of storage work (the disks sit on a slow Ceph pool, fakepve's ``ceph_slow``), and the
client's task polling (1 s in production) is scaled by the same factor, so the ratio of task time to
polling to request overhead is the one a real cluster would show, at a tenth of the wall time.

Three figures from the same cluster, database and process:

- one-by-one: the same ``FleetRunner`` with ``--max-parallel 1``; one VM after the other is what
  cv4pve-autosnap does (Corsinvest/cv4pve-autosnap src/Corsinvest.ProxmoxVE.AutoSnap.Api/Application.cs,
  ``Snap``: a ``foreach`` over the VMs, each snapshot created and waited for before the next);
- the fleet: ``--max-parallel M --per-node P``, three runs (one before the one-by-one run, two
  after), the median taken;
- the ideal for those limits: the fewest "rounds" the limits allow (``max(ceil(N/M), max over nodes
  ceil(n_node/P))``) times one VM's checkpoint time measured in the one-by-one run (median), i.e. a
  perfect packing with no cost for running side by side.

Proxmox requests per VM checkpoint are counted from fakepve's request log over the first fleet run. The
simulator runs in a process of its own (as a cluster is a machine of its own), so it does not
compete with the measured worker threads for this interpreter's lock.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import os
import statistics
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks.docs_section import write_section
from benchmarks.fakepve_thread import TOKEN_ID, TOKEN_SECRET, ServedPve
from hubcore.proxmox import ProxmoxClient
from runtime.fleet.records import FleetReport, Selector
from runtime.fleet.runner import FleetRunner
from runtime.settings import Settings
from runtime.wiring import Services

NODES = ("pve1", "pve2", "pve3")
POOL = "bench"
SCALE = 0.1  # real seconds per PVE second
SNAPSHOT_SECS = 4.0  # PVE seconds of storage work per snapshot (a few seconds is typical without RAM)
START, END = "<!-- fleet-checkpoint:start -->", "<!-- fleet-checkpoint:end -->"


def populate(served: ServedPve, vms: int) -> None:
    pve = served.pve
    for node in NODES[1:]:
        pve.add_node(node)
    pve.add_ceph_storage()
    for i in range(vms):
        vmid = 1000 + i
        pve.add_vm(
            vmid,
            f"task-{vmid}",
            node=NODES[i % len(NODES)],
            status="running",
            pool=POOL,
            config={"scsi0": f"ceph-pool:vm-{vmid}-disk-0,size=8G", "tags": "hub-machine;hub-project-bench"},
        )
    pve.ceph_slow(SNAPSHOT_SECS)


def runner(served: SimulatorProcess, services: Services) -> FleetRunner:
    user, _, name = TOKEN_ID.partition("!")

    def client() -> ProxmoxClient:
        return ProxmoxClient(
            base_url=served.url,
            token_user=user,
            token_name=name,
            token_secret=TOKEN_SECRET,
            verify=served.cafile,
            sleep=lambda s: time.sleep(s * SCALE),  # task polling on the simulator's clock
        )

    return FleetRunner(
        settings=services.settings,
        db=services.ready_db(),
        locks=services.locks,
        vms=services.vms,
        client=client,
        actor="bench",
    )


def run(fleet: FleetRunner, *, max_parallel: int, per_node: int) -> tuple[FleetReport, float]:
    started = time.perf_counter()
    report = fleet.checkpoint(
        Selector.of(project="bench", tag=None, all_vms=False), max_parallel=max_parallel, per_node=per_node
    )
    elapsed = time.perf_counter() - started
    assert report.failed == 0, [r for r in report.results if r.status != "completed"][:3]
    return report, elapsed


class SimulatorProcess:
    """fakepve in a process of its own, as a real cluster is: the simulator's event loop must not
    share the benchmark's interpreter lock with the twelve worker threads it is measuring."""

    def __init__(self, state: Path, vms: int) -> None:
        context = multiprocessing.get_context("fork")  # before this process starts any thread
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_simulator, args=(child, str(state), vms), daemon=True)
        self._process.start()
        self.url, self.cafile = self._conn.recv()

    def requests(self) -> list[tuple[str, str]]:
        self._conn.send("requests")
        return self._conn.recv()

    def stop(self) -> None:
        self._conn.send("stop")
        self._conn.recv()
        self._process.join(30)


def _simulator(conn: Any, state: str, vms: int) -> None:
    served = ServedPve(Path(state), time_scale=SCALE)
    populate(served, vms)
    conn.send((served.url, served.cafile))
    while True:
        command = conn.recv()
        if command == "requests":
            conn.send([(method, path) for method, path, _ in served.pve.requests])
        else:
            served.stop()
            conn.send("stopped")
            return


def measure(*, vms: int, max_parallel: int, per_node: int, database_url: str | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        served = SimulatorProcess(root, vms)
        try:
            settings = Settings(
                database_url=database_url or f"sqlite:///{root / 'hub.db'}",
                proxmox_url=served.url,
                proxmox_api_token=f"{TOKEN_ID}={TOKEN_SECRET}",  # pyright: ignore[reportArgumentType]
                proxmox_ca_bundle=Path(served.cafile),
                vmid=100,
                pool=POOL,
                lock_dir=root / "locks",
                keep_last=10,  # four runs, four checkpoints per VM: no run pays for pruning another's
            )
            services = Services(settings)
            services.db.upgrade()
            fleet = runner(served, services)
            load_before = os.getloadavg()[0]
            before = len(served.requests())
            parallel, parallel_s = run(fleet, max_parallel=max_parallel, per_node=per_node)
            log = served.requests()[before:]
            kinds = Counter(_kind(method, path) for method, path in log)
            sequential, sequential_s = run(fleet, max_parallel=1, per_node=1)
            # Two more fleet runs after the one-by-one one, so a burst of load on this shared machine
            # during one of them shows as spread rather than as the figure (the median is used).
            fleets = [(parallel, parallel_s)] + [
                run(fleet, max_parallel=max_parallel, per_node=per_node) for _ in range(2)
            ]
            load_after = os.getloadavg()[0]
            services.close()
        finally:
            served.stop()
    per_vm = statistics.median(r.seconds for r in sequential.results)
    nodes = Counter(r.node for r in parallel.results)
    rounds = max(math.ceil(vms / max_parallel), *(math.ceil(n / per_node) for n in nodes.values()))
    return {
        "vms": vms,
        "nodes": len(nodes),
        "max_parallel": max_parallel,
        "per_node": per_node,
        "fleet_s": statistics.median(seconds for _, seconds in fleets),
        "fleet_runs": sorted(seconds for _, seconds in fleets),
        "sequential_s": sequential_s,
        "per_vm_s": per_vm,
        "fleet_per_vm_s": statistics.median(r.seconds for report, _ in fleets for r in report.results),
        "rounds": rounds,
        "ideal_s": rounds * per_vm,
        "requests": len(log),
        "kinds": dict(kinds),
        "load": (load_before, load_after),
        "database": "PostgreSQL" if database_url and database_url.startswith("postgresql") else "SQLite",
    }


def _kind(method: str, path: str) -> str:
    tail = path.split("/api2/json", 1)[-1]
    if tail.startswith("/cluster/resources"):
        return "GET /cluster/resources"
    if "/tasks/" in tail:
        return "GET task status"
    if tail.endswith("/snapshot"):
        return f"{method} snapshot list" if method == "GET" else f"{method} snapshot"
    if "/snapshot/" in tail:
        return f"{method} snapshot/{{name}}/" + tail.rsplit("/", 1)[-1]
    return f"{method} {tail}"


def render(r: dict[str, Any]) -> str:
    speedup = r["sequential_s"] / r["fleet_s"]
    to_ideal = r["fleet_s"] / r["ideal_s"]
    per_vm_requests = r["requests"] / r["vms"]
    lines = [
        f"{r['vms']} VMs over {r['nodes']} nodes, `--max-parallel {r['max_parallel']} --per-node "
        f"{r['per_node']}`; a snapshot task takes {SNAPSHOT_SECS:.0f} PVE seconds (time scale {SCALE}: "
        f"{SNAPSHOT_SECS * SCALE:.1f} s real), task polling on the same scale; {r['database']}; load "
        f"average {r['load'][0]:.1f} before, {r['load'][1]:.1f} after (2 cores).",
        "",
        "| figure | measured | baseline (same run) | ratio | goal | met |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| fleet makespan (median of 3: {' / '.join(f'{x:.1f}' for x in r['fleet_runs'])} s) vs one-by-one "
        f"| {r['fleet_s']:.1f} s | one-by-one {r['sequential_s']:.1f} s "
        f"| {speedup:.1f}x faster | >= 5x faster | {'met' if speedup >= 5 else 'missed'} |",
        f"| fleet makespan vs ideal for the limits | {r['fleet_s']:.1f} s | ideal {r['ideal_s']:.1f} s "
        f"({r['rounds']} rounds x {r['per_vm_s']:.2f} s, one VM's median one-by-one) | {to_ideal:.2f}x "
        f"| <= 1.15x | {'met' if to_ideal <= 1.15 else 'missed'} |",
        f"| packing: makespan vs rounds x one VM's time inside the fleet | {r['fleet_s']:.1f} s "
        f"| {r['rounds']} x {r['fleet_per_vm_s']:.2f} s = {r['rounds'] * r['fleet_per_vm_s']:.1f} s "
        f"| {r['fleet_s'] / (r['rounds'] * r['fleet_per_vm_s']):.2f}x | (the scheduler's own share) | - |",
        f"| Proxmox requests per VM checkpoint | {per_vm_requests:.1f} | - | - | constant in N | - |",
        "",
        f"One VM's checkpoint, median: {r['per_vm_s']:.2f} s one-by-one, {r['fleet_per_vm_s']:.2f} s "
        "inside the fleet (the difference is the cost of running side by side on this machine).",
        "",
        "Requests over the fleet run, by kind: "
        + ", ".join(f"{k}: {v}" for k, v in sorted(r["kinds"].items(), key=lambda kv: -kv[1]))
        + ".",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", type=Path)
    parser.add_argument("--vms", type=int, default=200)
    parser.add_argument("--max-parallel", type=int, default=12)
    parser.add_argument("--per-node", type=int, default=4)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    result = measure(
        vms=args.vms, max_parallel=args.max_parallel, per_node=args.per_node, database_url=args.database_url
    )
    text = render(result)
    print(text)
    if args.write:
        write_section(args.write, START, END, text)


if __name__ == "__main__":
    main()
