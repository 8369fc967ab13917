"""Reconcile at scale: 10,000 checkpoint rows over 500 VMs, in one process, against fakepve.

    .venv/bin/python -m benchmarks.reconcile_scale --write docs/performance.md

Three figures from one run, on the same simulator and database:

- the floor: a bare proxmoxer loop that reads what reconcile must read and nothing else (one
  cluster listing, one snapshot list per VM), with no database and no lock;
- `reconcile_owned` in-process, what `hubctl reconcile --all` runs (one lock, one database read and
  one audit row per VM);
- `hubctl reconcile --all` as a real process, start-up included (the goal: under 10 s).

Proxmox requests are counted from the simulator's own log, to show they grow with VMs, not rows.
The state is steady (database and Proxmox agree), the common case of a periodic reconcile.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from proxmoxer import ProxmoxAPI  # pyright: ignore[reportMissingTypeStubs]

from benchmarks.docs_section import write_section
from benchmarks.fakepve_thread import TOKEN_ID, TOKEN_SECRET, ServedPve
from runtime.checkpoints import naming
from runtime.db import Checkpoint
from runtime.db.models import new_uuid
from runtime.fleet.reconcile import reconcile_owned
from runtime.settings import Settings
from runtime.wiring import Services

REPO = Path(__file__).resolve().parent.parent
NODES = ("pve1", "pve2", "pve3")
POOL = "bench"


def populate(served: ServedPve, services: Services, *, vms: int, per_vm: int) -> list[int]:
    pve = served.pve
    for node in NODES[1:]:
        pve.add_node(node)
    vmids = [1000 + i for i in range(vms)]
    base = datetime(2026, 11, 1, tzinfo=UTC)
    rows: list[Checkpoint] = []
    for i, vmid in enumerate(vmids):
        node = NODES[i % len(NODES)]
        # Owned machines (tagged hub-machine, in the Hub's pool), as the machines domain makes them:
        # `reconcile --all` visits them by ownership as well as by their rows.
        pve.add_vm(
            vmid,
            f"task-{vmid}",
            node=node,
            status="running",
            pool=POOL,
            config={"scsi0": "local-lvm:x,size=8G", "tags": "hub-machine;hub-project-bench"},
        )
        for j in range(per_vm):
            uuid = new_uuid()
            created = base + timedelta(hours=j)
            name = naming.snapname_for(uuid)
            pve.vm(vmid).snapshots[name] = {
                "snaptime": int(created.timestamp()),
                "description": naming.describe(uuid=uuid, kind="scheduled", created_at=created, reason=None),
            }
            rows.append(
                Checkpoint(
                    uuid=uuid,
                    vm_id=vmid,
                    node=node,
                    snapname=name,
                    kind="scheduled",
                    status="completed",
                    created_at=created,
                    completed_at=created,
                    protected=False,
                    label="scheduled",
                    vmstate=False,
                )
            )
    with services.db.session() as s:
        s.add_all(rows)
    return vmids


def floor(served: ServedPve, vmids: list[int]) -> float:
    user, _, name = TOKEN_ID.partition("!")
    api: Any = ProxmoxAPI(
        "127.0.0.1",
        port=served.pve.port,
        user=user,
        token_name=name,
        token_value=TOKEN_SECRET,
        verify_ssl=served.cafile,
    )
    started = time.perf_counter()
    where = {int(r["vmid"]): r["node"] for r in api.cluster.resources.get(type="vm")}
    for vmid in vmids:
        api.nodes(where[vmid]).qemu(vmid).snapshot.get()
    return time.perf_counter() - started


def measure(*, vms: int, per_vm: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        served = ServedPve(root)
        try:
            values: dict[str, Any] = {
                "database_url": f"sqlite:///{root / 'hub.db'}",
                "proxmox_url": served.url,
                "proxmox_api_token": f"{TOKEN_ID}={TOKEN_SECRET}",
                "proxmox_ca_bundle": Path(served.cafile),
                "vmid": 100,
                "pool": POOL,
                "lock_dir": root / "locks",
            }
            services = Services(Settings(**values))
            services.db.upgrade()
            vmids = populate(served, services, vms=vms, per_vm=per_vm)
            floors = [floor(served, vmids) for _ in range(3)]
            before = len(served.pve.requests)
            inproc: list[float] = []
            for _ in range(3):
                started = time.perf_counter()
                done = reconcile_owned(services, actor="bench")  # what `reconcile --all` runs
                reports, failed = done.reports, done.failed
                assert [r.vm_id for r in reports] == [100, *vmids]
                inproc.append(time.perf_counter() - started)
                assert not failed and not any(r.changes for r in reports), "the state was not steady"
                services.vms.forget()  # each round lists the cluster afresh, as a new process would
            requests_per_run = (len(served.pve.requests) - before) / 3
            env = {f"HUB_{k.upper()}": str(v) for k, v in values.items()}
            env["PYTHONPATH"] = str(REPO)
            process: list[float] = []
            for _ in range(3):
                started = time.perf_counter()
                done = subprocess.run(
                    [sys.executable, "-m", "runtime", "reconcile", "--all", "--json"],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=600,
                    check=False,
                )
                process.append(time.perf_counter() - started)
                assert done.returncode == 0, done.stderr
                assert len(json.loads(done.stdout)["vms"]) == vms + 1
            services.close()
        finally:
            served.stop()
    return {
        "vms": vms,
        "rows": vms * per_vm,
        "floor": floors,
        "inproc": inproc,
        "process": process,
        "requests": requests_per_run,
    }


def _fmt(values: list[float]) -> str:
    return f"{min(values):.2f} / {statistics.median(values):.2f} / {max(values):.2f} s"


def render(results: list[dict[str, Any]]) -> str:
    lines = [
        "| VMs | rows | floor: bare proxmoxer reads (min/median/max) | `reconcile_owned` in-process "
        "| ratio to floor (median) | `hubctl reconcile --all` process | goal < 10 s "
        "| Proxmox requests per run |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in results:
        ratio = statistics.median(r["inproc"]) / statistics.median(r["floor"])
        met = "met" if statistics.median(r["process"]) < 10 else "missed"
        lines.append(
            f"| {r['vms']} | {r['rows']:,} | {_fmt(r['floor'])} | {_fmt(r['inproc'])} | {ratio:.2f}x "
            f"| {_fmt(r['process'])} | {met} | {r['requests']:.0f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    results = [measure(vms=50, per_vm=20), measure(vms=500, per_vm=20)]
    table = render(results)
    print(table)
    if args.write:
        write_section(args.write, "<!-- reconcile-scale:start -->", "<!-- reconcile-scale:end -->", table)


if __name__ == "__main__":
    main()
