"""Cluster sync at scale: one pass over N task machines on three nodes, against fakepve in-process.

    .venv/bin/python -m benchmarks.machine_sync [--machines 500] [--passes 5]

Set-up: N machine rows (SQLite, runtime.db models) and N VMs in fakepve carrying the Hub's marker
(tags and uuid line), spread over three nodes; a project with a budget and cost rates so every pass
accrues. Each pass is ``runtime.machines.cluster_sync.sync_machines``; Proxmox requests are counted
from fakepve's own request log, to show they do not grow with the number of machines.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.fakepve_thread import TOKEN_ID, TOKEN_SECRET, ServedPve
from runtime.db.models import Machine, Project, new_uuid
from runtime.machines.cluster_sync import sync_machines
from runtime.machines.records import describe, tags_for
from runtime.settings import Settings
from runtime.wiring import Services

NODES = ("pve1", "pve2", "pve3")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--machines", type=int, default=500)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        served = ServedPve(Path(tmp))
        try:
            pve = served.pve
            for node in NODES[1:]:
                pve.add_node(node)
            settings = Settings(
                database_url=f"sqlite:///{tmp}/hub.db",
                proxmox_url=served.url,
                proxmox_api_token=f"{TOKEN_ID}={TOKEN_SECRET}",
                proxmox_ca_bundle=Path(served.cafile),
                lock_dir=Path(tmp) / "locks",
                cost_per_core_hour=0.01,
            )
            services = Services(settings)
            services.db.upgrade()
            now = datetime.now(UTC)
            with services.db.session() as s:
                s.add(Project(name="bench", budget=1e9, spent=0.0, created_at=now))
                for i in range(args.machines):
                    uuid, vmid, name = new_uuid(), 1000 + i, f"m{i}"
                    pve.add_vm(
                        vmid,
                        name,
                        node=NODES[i % 3],
                        status="running",
                        config={
                            "cores": 2,
                            "memory": 2048,
                            "tags": tags_for("bench"),
                            "description": describe(uuid=uuid, project="bench", name=name),
                        },
                    )
                    s.add(
                        Machine(
                            uuid=uuid,
                            name=name,
                            project="bench",
                            vm_id=vmid,
                            node=NODES[i % 3],
                            status="running",
                            step="started",
                            cores=2,
                            memory_mib=2048,
                            disk_gb=10,
                            created_at=now,
                            updated_at=now,
                            last_uptime=0,
                            cpu=0.0,
                            cost=0.0,
                            idle=False,
                        )
                    )
            times: list[float] = []
            requests: list[int] = []
            for p in range(args.passes):
                before = len(pve.requests)
                started = time.perf_counter()
                report = sync_machines(services, clock=lambda p=p: now + timedelta(minutes=5 * (p + 1)))
                times.append(time.perf_counter() - started)
                requests.append(len(pve.requests) - before)
                assert report.seen == args.machines and not report.errors, report.to_public()
            print(f"machines: {args.machines} on {len(NODES)} nodes, passes: {args.passes}")
            print(f"pass time: median {statistics.median(times):.3f} s, max {max(times):.3f} s")
            print(f"Proxmox requests per pass: {sorted(set(requests))}")
        finally:
            served.stop()


if __name__ == "__main__":
    main()
