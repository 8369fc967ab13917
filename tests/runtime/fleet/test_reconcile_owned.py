"""Reconcile covers every VM the Hub owns: the Hub VM, VMs with rows, and tagged machines in the pool
(rows or not); never a foreign VM; and its Proxmox requests grow with VMs, not checkpoint rows."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from runtime.checkpoints import naming
from runtime.db import Checkpoint
from runtime.db.models import new_uuid
from runtime.fleet.reconcile import reconcile_owned
from runtime.vms import VmLocator
from runtime.wiring import Services
from tests.runtime.fleet import cluster
from tests.support.hubenv import HUB_VMID, HubEnv


def add_rows(pve: Any, services: Services, vmid: int, count: int) -> None:
    """``count`` completed checkpoints of the VM, in the database and on Proxmox alike (steady state)."""
    base = datetime(2026, 11, 1, tzinfo=UTC) + timedelta(days=len(pve.vm(vmid).snapshots))
    rows: list[Checkpoint] = []
    for i in range(count):
        uuid, created = new_uuid(), base + timedelta(minutes=i)
        name = naming.snapname_for(uuid)
        pve.vm(vmid).snapshots[name] = {
            "snaptime": int(created.timestamp()),
            "description": naming.describe(uuid=uuid, kind="scheduled", created_at=created, reason=None),
        }
        rows.append(
            Checkpoint(
                uuid=uuid,
                vm_id=vmid,
                node=pve.vm(vmid).node,
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
    with services.ready_db().session() as s:
        s.add_all(rows)


def frozen(env: HubEnv) -> Services:
    """Services whose locator keeps its one listing for the whole run (the count below must not
    depend on how long a loaded machine takes)."""
    services = env.services()
    services.__dict__["vms"] = VmLocator(services.proxmox, clock=lambda: 0.0)
    return services


def test_reconcile_all_covers_tagged_machines_and_never_foreign_ones(fleet_env: HubEnv, fleet: Any) -> None:
    # A Hub snapshot on a machine the database has no row of (its row was lost with a rollback):
    # only a reconcile that visits every owned machine, rows or not, finds it.
    orphan = cluster.hub_snapshot(fleet, 303)
    # The same on look-alikes that are not ours: left alone, not even read.
    for vmid in (401, 402, 403):
        cluster.hub_snapshot(fleet, vmid)
    done = fleet_env.run("reconcile", "--all", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [r["vm_id"] for r in doc["vms"]] == [HUB_VMID, *cluster.MACHINES]
    assert doc["failed"] == []
    changes = {r["vm_id"]: r["changes"] for r in doc["vms"] if r["changes"]}
    assert changes == {
        303: [{"uuid": orphan, "action": "imported", "why": "Hub snapshot on Proxmox had no row"}]
    }
    for vmid in cluster.FOREIGN:
        assert cluster.touched(fleet, vmid) == []
    listed = json.loads(fleet_env.run("checkpoint", "list", "--vmid", "303", "--json").stdout)
    assert [c["uuid"] for c in listed["checkpoints"]] == [orphan]


def test_a_vm_with_rows_but_gone_is_reported_without_a_request(fleet_env: HubEnv, fleet: Any) -> None:
    services = fleet_env.services()
    add_rows(fleet, services, 201, 2)
    fleet.vms.remove(fleet.vm(201))  # destroyed outside the Hub
    done = fleet_env.run("reconcile", "--all", "--json")
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["failed"] == [
        {"vm_id": 201, "error": "no VM 201 in the cluster (or the Hub's token may not see it)"}
    ]
    assert 201 not in [r["vm_id"] for r in doc["vms"]]
    assert cluster.touched(fleet, 201) == []


def test_requests_grow_with_vms_not_rows(fleet_env: HubEnv, fleet: Any) -> None:
    owned = [HUB_VMID, *cluster.MACHINES]

    def requests_for_one_run() -> int:
        services = frozen(fleet_env)
        before = len(fleet.requests)
        done = reconcile_owned(services, actor="test")
        assert [r.vm_id for r in done.reports] == owned and not done.failed
        assert not any(r.changes for r in done.reports)  # steady: database and Proxmox agree
        return len(fleet.requests) - before

    services = fleet_env.services()
    for vmid in owned:
        add_rows(fleet, services, vmid, 2)
    few_rows = requests_for_one_run()
    for vmid in owned:
        add_rows(fleet, services, vmid, 10)
    many_rows = requests_for_one_run()
    # One cluster listing, then one snapshot list per owned VM: nothing per row.
    assert few_rows == many_rows == 1 + len(owned)


def test_the_periodic_reconcile_audits_what_changed_not_every_quiet_vm(fleet_env: HubEnv, fleet: Any) -> None:
    from sqlalchemy import select

    from runtime.db import AuditEntry

    services = fleet_env.services()

    def reconcile_audits() -> list[str]:
        with services.ready_db().session() as s:
            return [
                str(e.target) for e in s.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile"))
            ]

    reconcile_owned(services, actor="service", audit_steady=False)  # steady: nothing to say
    assert reconcile_audits() == []
    orphan = cluster.hub_snapshot(fleet, 206)
    reconcile_owned(services, actor="service", audit_steady=False)
    assert reconcile_audits() == ["vm/206"]  # the one VM where something happened
    with services.ready_db().session() as s:
        imported = s.scalars(select(AuditEntry).where(AuditEntry.action == "reconcile.import")).all()
    assert [e.target for e in imported] == [orphan]
    reconcile_owned(services, actor="hubctl")  # an operator's run is audited for every VM
    assert len(reconcile_audits()) == 1 + 1 + len(cluster.MACHINES)
