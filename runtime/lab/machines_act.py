"""The lab's task-machine act: a project with a quota, machines created until the quota refuses
(before any Proxmox call), and a machine destroyed outside the Hub, noticed by cluster sync.

Driven through the real runtime (quota reservation, the clone/configure/start steps over the
Proxmox API, cluster sync); the "outside" destroy goes through the Proxmox API as an operator's
would, not through the Hub. Then a fleet checkpoint of the project (``runtime.fleet``, what
``hubctl fleet checkpoint --project lab`` and the project's schedule run) with one VM's snapshot
refused by the simulator (fakepve's fault injection, PVE's own "snapshot feature is not available"):
that VM is reported, the others get their checkpoints.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.markup import escape

from runtime.checkpoints.records import CheckpointKind
from runtime.fleet.records import Selector
from runtime.fleet.runner import FleetRunner
from runtime.lab.simulator import TASK_POOL, TASK_TEMPLATE_VMID
from runtime.machines.cluster_sync import sync_machines
from runtime.machines.errors import QuotaExceeded
from runtime.machines.lifecycle import MachineService
from runtime.machines.projects import ProjectStore
from runtime.machines.records import MachineRecord
from runtime.settings import Settings
from runtime.wiring import Services

if TYPE_CHECKING:
    from hubcore.proxmox import ProxmoxError
    from runtime.lab.walkthrough import Lab

PROJECT = "lab"
QUOTA = 2


def run(lab: Lab) -> None:
    console = lab.console
    lab.step(f"7. task machines: a quota of {QUOTA}, a VM destroyed outside the Hub, a fleet checkpoint")
    settings = Settings(
        **lab.settings_values(),
        pool=TASK_POOL,
        task_template_vmid=TASK_TEMPLATE_VMID,
        task_networks="labnet",
    )
    calls = _Calls()
    services = Services(settings, proxmox_observer=calls)
    try:
        ProjectStore(services.ready_db(), actor="lab").create(PROJECT, machines=QUOTA, cores=4)
        console.print(f"[green]✓[/] project {PROJECT}: at most {QUOTA} machines, 4 cores")
        svc = MachineService.build_from(
            services, actor="lab", progress=lambda m: console.print(f"   · {m}", markup=False)
        )
        made: list[MachineRecord] = []
        for n in range(1, QUOTA + 2):
            before = calls.count
            try:
                m = svc.create(project=PROJECT, name=f"{PROJECT}-{n}")
            except QuotaExceeded as exc:
                console.print(f"[yellow]refused[/] {exc}", markup=True)
                console.print(f"   Proxmox calls made for the refused request: {calls.count - before}")
                break
            made.append(m)
            console.print(f"[green]✓[/] machine {m.name}: VM {m.vm_id} on {m.node}, {m.status}")
        victim = made[0]
        assert victim.vm_id is not None
        vm = services.vms.locate(victim.vm_id)
        console.print(f"   an operator destroys VM {vm.vmid} with the Proxmox API, behind the Hub's back...")
        services.proxmox.stop(vm, timeout=settings.task_timeout_seconds)
        services.proxmox.destroy(vm, timeout=settings.task_timeout_seconds)
        report = sync_machines(services, actor="lab")
        console.print(
            f"[green]✓[/] cluster sync (one request to /cluster/resources) noticed: {report.vanished}"
        )
        shown = svc.show(victim.uuid)
        console.print(f"   machine {shown.name} is now '{shown.status}': {shown.error}", markup=False)
        _fleet(lab, services, svc, survivors=made[1:], made=len(made))
    finally:
        services.close()


def _fleet(
    lab: Lab, services: Services, svc: MachineService, *, survivors: list[MachineRecord], made: int
) -> None:
    """More machines (the missing one freed its slot; the limit is raised by one), then a fleet
    checkpoint of the project while the simulator refuses one VM's snapshot."""
    console = lab.console
    ProjectStore(services.ready_db(), actor="lab").set(PROJECT, max_machines=QUOTA + 1)
    live = list(survivors)
    for n in range(made + 1, made + 3):
        m = svc.create(project=PROJECT, name=f"{PROJECT}-{n}")
        live.append(m)
        console.print(f"[green]✓[/] machine {m.name}: VM {m.vm_id} on {m.node}, {m.status}")
    broken = live[-1]
    assert lab.sim is not None and broken.vm_id is not None
    lab.sim.inject_faults(
        [
            {
                "method": "POST",
                "suffix": f"/qemu/{broken.vm_id}/snapshot",
                "error": "snapshot_feature_not_available",
            }
        ]
    )
    console.print(
        f"   fleet checkpoint of project '{PROJECT}' ({len(live)} VMs); the simulator refuses "
        f"VM {broken.vm_id}'s snapshot..."
    )
    report = FleetRunner.build(services, actor="lab").checkpoint(
        Selector.of(project=PROJECT, tag=None, all_vms=False), kind=CheckpointKind.MANUAL, label="lab-fleet"
    )
    for r in sorted(report.results, key=lambda r: r.vm_id):
        mark = "[green]✓[/]" if r.status.value == "completed" else "[red]✗[/]"
        console.print(
            f"{mark} VM {r.vm_id} on {r.node}: {r.status.value}" + (f": {escape(r.error)}" if r.error else "")
        )
    console.print(
        f"   fleet summary: {report.total} selected, {report.completed} completed, {report.failed} failed "
        f"in {report.seconds:.1f}s"
    )


class _Calls:
    """Counts the Proxmox requests this process makes (a ProxmoxObserver): the refusal shows 0."""

    def __init__(self) -> None:
        self.count = 0

    def on_request(self, kind: str, *, seconds: float, error: str | None) -> None:
        self.count += 1

    def on_retry(self, kind: str, *, attempt: int, delay: float, error: ProxmoxError) -> None:
        pass
