"""The fleet's concurrency bounds, observed from the Proxmox side: fakepve (with a time scale, so a
snapshot task really takes time) records when each snapshot task's work starts and ends, per node,
and the test asserts the largest overlap, overall and per node, never exceeded the limits. No
wall-clock threshold: only the order of recorded starts and ends counts."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest

from runtime.fleet.records import Selector
from runtime.fleet.runner import FleetRunner
from runtime.vms import VmLocator
from tests.runtime.fleet import cluster
from tests.support.hubenv import HUB_VMID, HubEnv, fake_pve_client

SCALE = 0.02  # PVE seconds -> real seconds
SNAPSHOT_SECS = 20  # PVE seconds a snapshot's storage work takes: 0.4 s real


class Overlap:
    """Snapshot tasks in flight on the fake, overall and per node, and the most seen at once."""

    def __init__(self, pve: Any) -> None:
        self.now: Counter[str] = Counter()
        self.most: Counter[str] = Counter()
        self.most_overall = 0
        self.events: list[tuple[str, int, str]] = []
        inner = pve.ceph_io

        async def recorded(vm: Any, keys: Any = None) -> None:
            self.now[vm.node] += 1
            self.events.append(("start", vm.vmid, vm.node))
            self.most[vm.node] = max(self.most[vm.node], self.now[vm.node])
            self.most_overall = max(self.most_overall, self.now.total())
            try:
                await inner(vm, keys)
            finally:
                self.now[vm.node] -= 1
                self.events.append(("end", vm.vmid, vm.node))

        pve.ceph_io = recorded


@pytest.fixture
def slow_fleet(fleet: Any) -> Any:
    fleet.time_scale = SCALE
    fleet.add_ceph_storage()
    for vmid in cluster.MACHINES:
        fleet.vm(vmid).config["scsi0"] = f"ceph-pool:vm-{vmid}-disk-0,size=8G"
    fleet.ceph_slow(SNAPSHOT_SECS)
    return fleet


def runner(env: HubEnv, pve: Any, cafile: str) -> FleetRunner:
    services = env.services()

    def scaled_sleep(seconds: float) -> None:
        time.sleep(seconds * SCALE)

    def client() -> Any:
        # The client's task polling on the fake's time scale, as the fake's tasks are.
        return fake_pve_client(pve, cafile, sleep=scaled_sleep)

    # A locator whose clock stands still: the one listing serves the whole run, so the count of
    # cluster reads below does not depend on how long a loaded machine takes.
    frozen = VmLocator(client(), clock=lambda: 0.0)
    return FleetRunner(
        settings=services.settings,
        db=services.ready_db(),
        locks=services.locks,
        vms=frozen,
        client=client,
        actor="test",
    )


@pytest.mark.parametrize(("max_parallel", "per_node"), [(4, 2), (8, 1)])
def test_bounds_hold_overall_and_per_node(
    fleet_env: HubEnv, slow_fleet: Any, fakepve_cafile: str, max_parallel: int, per_node: int
) -> None:
    overlap = Overlap(slow_fleet)
    report = runner(fleet_env, slow_fleet, fakepve_cafile).checkpoint(
        Selector.of(project=None, tag=None, all_vms=True), max_parallel=max_parallel, per_node=per_node
    )
    machines = set(cluster.MACHINES)
    assert report.completed == report.total == len(machines) + 1, report.to_public()
    started = {vmid for what, vmid, _ in overlap.events if what == "start"}
    assert started == machines | {HUB_VMID}  # every snapshot task was seen (the Hub VM's is quick)
    assert overlap.most_overall <= max_parallel
    assert all(most <= per_node for most in overlap.most.values()), overlap.most
    # ... and it did run side by side: with 0.4 s tasks and free slots, more than one at a time.
    assert overlap.most_overall >= 2, overlap.events
    assert cluster.cluster_reads(slow_fleet) == 1
    # The cost per VM is the same for every VM (no request grows with the fleet).
    per_vm = {vmid: len(cluster.touched(slow_fleet, vmid)) for vmid in machines}
    assert max(per_vm.values()) - min(per_vm.values()) <= 2, per_vm  # task polls may differ by one or two


def test_a_node_at_its_limit_does_not_hold_up_the_others(
    fleet_env: HubEnv, slow_fleet: Any, fakepve_cafile: str
) -> None:
    """Six of the nine machines wait behind one node's limit of 1; the others' nodes keep working."""
    for vmid in (*cluster.ALPHA,):
        slow_fleet.vm(vmid).node = "pve1"
    overlap = Overlap(slow_fleet)
    report = runner(fleet_env, slow_fleet, fakepve_cafile).checkpoint(
        Selector.of(project=None, tag=None, all_vms=True), max_parallel=3, per_node=1
    )
    assert report.failed == 0, report.to_public()
    assert overlap.most["pve1"] == 1
    # Before pve1's second snapshot started, the other nodes' snapshots had started: dispatch is not
    # in listing order (which would queue 202..206 behind 201 and leave pve2/pve3 idle).
    order = [vmid for what, vmid, _ in overlap.events if what == "start"]
    first_pve1 = [i for i, vmid in enumerate(order) if vmid in cluster.ALPHA]
    assert set(order[: first_pve1[1]]) & set(cluster.BETA), order
