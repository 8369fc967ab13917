"""The three-step protocol end to end, through the real hubctl, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select, text

from runtime.checkpoints import naming
from runtime.checkpoints.records import CheckpointKind
from runtime.db import AuditEntry, Checkpoint
from tests.support.hubenv import HUB_VMID, HubEnv, hub_snapshots

SCHEDULED = CheckpointKind.SCHEDULED  # the kind the HUB_KEEP_* policy applies to


def test_create_runs_the_protocol_and_records_everything(hubenv: HubEnv, pve: Any) -> None:
    result = hubenv.run("checkpoint", "create", "--reason", "before upgrade", "--json")
    assert result.returncode == 0, result.stderr
    cp = json.loads(result.stdout)
    assert set(cp) >= {
        "uuid",
        "vm_id",
        "node",
        "snapname",
        "kind",
        "status",
        "reason",
        "created_at",
        "completed_at",
        "error",
    }
    assert cp["status"] == "completed"
    assert cp["kind"] == "manual"
    assert cp["reason"] == "before upgrade"
    assert cp["vm_id"] == HUB_VMID and cp["node"] == "pve1"
    assert cp["error"] is None and cp["completed_at"] >= cp["created_at"]

    # The snapshot exists on Proxmox, is complete, valid for PVE and claims this checkpoint.
    snaps = hub_snapshots(pve)
    assert list(snaps) == [cp["snapname"]]
    assert naming.valid_pve_snapname(cp["snapname"]) and cp["snapname"].startswith("hub-")
    assert "snapstate" not in snaps[cp["snapname"]]
    claim = naming.owned(cp["snapname"], snaps[cp["snapname"]]["description"])
    assert claim is not None and claim.uuid == cp["uuid"] and claim.reason == "before upgrade"

    # The protocol's order as Proxmox saw it: snapshot request, task polled, the snapshot read back.
    calls = [(m, p.split("/api2/json")[-1]) for m, p, _ in pve.requests]
    snap_post = calls.index(("POST", f"/nodes/pve1/qemu/{HUB_VMID}/snapshot"))
    status = next(i for i, (m, p) in enumerate(calls) if m == "GET" and "/tasks/" in p and i > snap_post)
    verify = ("GET", f"/nodes/pve1/qemu/{HUB_VMID}/snapshot/{cp['snapname']}/config")
    assert verify in calls[status:]

    # Every transition is audited, in order.
    with hubenv.services().db.session() as s:
        rows = s.scalars(select(AuditEntry).where(AuditEntry.target == cp["uuid"]).order_by(AuditEntry.id))
        trail = [(e.action, e.outcome) for e in rows]
        stored = s.get_one(Checkpoint, cp["uuid"])
        assert stored.upid and stored.upid.startswith("UPID:pve1:")
    assert trail == [("checkpoint.create", "started"), ("checkpoint.create", "completed")]

    # list and show agree with create.
    listed = json.loads(hubenv.run("checkpoint", "list", "--json").stdout)["checkpoints"]
    assert [c["uuid"] for c in listed] == [cp["uuid"]]
    shown = json.loads(hubenv.run("checkpoint", "show", cp["uuid"], "--json").stdout)
    assert shown["status"] == "completed" and shown["snapname"] == cp["snapname"]


def test_list_is_newest_first_and_filters(hubenv: HubEnv, pve: Any) -> None:
    svc = hubenv.checkpoints(keep_last=0, keep_daily=0, keep_weekly=0, keep_monthly=0)
    made = [svc.create(reason=f"n{i}").uuid for i in range(3)]
    out = json.loads(hubenv.run("checkpoint", "list", "--json").stdout)["checkpoints"]
    assert [c["uuid"] for c in out] == list(reversed(made))
    assert json.loads(hubenv.run("checkpoint", "list", "--status", "failed", "--json").stdout) == {
        "checkpoints": []
    }
    assert (
        len(json.loads(hubenv.run("checkpoint", "list", "--vmid", "100", "--json").stdout)["checkpoints"])
        == 3
    )
    assert json.loads(hubenv.run("checkpoint", "list", "--vmid", "101", "--json").stdout)["checkpoints"] == []


def test_delete_removes_the_snapshot_and_keeps_the_row(hubenv: HubEnv, pve: Any) -> None:
    cp = json.loads(hubenv.run("checkpoint", "create", "--json").stdout)
    result = hubenv.run("checkpoint", "delete", cp["uuid"], "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["status"] == "deleted"
    assert hub_snapshots(pve) == {}
    again = hubenv.run("checkpoint", "delete", cp["uuid"], "--json")  # idempotent
    assert again.returncode == 0 and json.loads(again.stdout)["status"] == "deleted"


def test_foreign_snapshots_are_never_touched(hubenv: HubEnv, pve: Any) -> None:
    vm = pve.vm(HUB_VMID)
    vm.snapshots["before-kernel"] = {"snaptime": 1, "description": "operator's own"}
    # Named like ours but not claimed by its description: still foreign.
    vm.snapshots["hub-" + "0" * 32] = {"snaptime": 2, "description": "someone else's"}
    svc = hubenv.checkpoints(keep_last=1, keep_daily=0, keep_weekly=0, keep_monthly=0)
    for _ in range(3):
        svc.create(kind=SCHEDULED)
    assert hubenv.run("reconcile").returncode == 0
    assert "before-kernel" in vm.snapshots and "hub-" + "0" * 32 in vm.snapshots
    assert len(hub_snapshots(pve)) == 2  # the foreign hub-000... plus the one checkpoint keep-last keeps


def test_audit_trail_is_append_only(hubenv: HubEnv) -> None:
    svc = hubenv.checkpoints()
    svc.create()
    engine = svc.db.engine
    for statement in ("UPDATE hub_audit SET outcome = 'forged'", "DELETE FROM hub_audit"):
        with engine.connect() as conn:
            try:
                conn.execute(text(statement))
                conn.commit()
            except Exception as exc:  # the database itself refuses
                assert "append-only" in str(exc)
            else:
                raise AssertionError(f"{statement!r} was allowed")
    with svc.db.session() as s:
        assert all(e.outcome != "forged" for e in s.scalars(select(AuditEntry)))


def test_audit_details_carry_no_secrets(hubenv: HubEnv) -> None:
    svc = hubenv.checkpoints()
    svc.create(reason="token hub@pve!hub=" + "ab" * 16)
    with svc.db.session() as s:
        dumped = json.dumps([e.to_public() for e in s.scalars(select(AuditEntry))])
    assert "ab" * 16 not in dumped
    assert hubenv.values["HUB_PROXMOX_API_TOKEN"].split("=")[1] not in dumped
