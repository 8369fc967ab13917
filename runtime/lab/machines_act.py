"""The lab's task-machine act: a project with a quota, machines created until the quota refuses
(before any Proxmox call), and a machine destroyed outside the Hub, noticed by cluster sync.

Driven through the real runtime (quota reservation, the clone/configure/start steps over the
Proxmox API, cluster sync); the "outside" destroy goes through the Proxmox API as an operator's
would, not through the Hub. The fleet checkpoint part is added by the fleet work.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

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
    lab.step(
        f"7. task machines: project '{PROJECT}' with a quota of {QUOTA}, then one destroyed outside the Hub"
    )
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
    finally:
        services.close()


class _Calls:
    """Counts the Proxmox requests this process makes (a ProxmoxObserver): the refusal shows 0."""

    def __init__(self) -> None:
        self.count = 0

    def on_request(self, kind: str, *, seconds: float, error: str | None) -> None:
        self.count += 1

    def on_retry(self, kind: str, *, attempt: int, delay: float, error: ProxmoxError) -> None:
        pass
