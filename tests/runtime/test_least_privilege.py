"""The runtime works with exactly the privileges hubinfra grants the Hub (one list, in
hubinfra.privileges), scoped as hubinfra scopes them, and fails clearly without them."""

from __future__ import annotations

from typing import Any

from hubinfra.privileges import HUB_PRIVILEGES, Scope
from tests.support.hubenv import HUB_VMID, TOKEN_ID, HubEnv, hub_snapshots, one_line_error

POOL = "hub-dev"


def grant_like_hubinfra(pve: Any, *, without: str | None = None) -> None:
    pve.pools.setdefault(POOL, set()).add(HUB_VMID)
    paths = {Scope.POOL: f"/pool/{POOL}", Scope.NODE: "/nodes/pve1", Scope.SDN_ZONE: "/sdn/zones/hubdev"}
    for scope, path in paths.items():
        privs = [p.name for p in HUB_PRIVILEGES if p.scope is scope and p.name != without]
        pve.grant(TOKEN_ID, path, *privs)


def test_checkpoint_lifecycle_with_the_granted_privileges_only(sqlite_hubenv: HubEnv, pve: Any) -> None:
    grant_like_hubinfra(pve)
    env = sqlite_hubenv
    created = env.run("checkpoint", "create", "--json")
    assert created.returncode == 0, created.stderr
    assert env.run("reconcile").returncode == 0
    assert env.run("health").returncode == 0
    uuid = __import__("json").loads(created.stdout)["uuid"]
    assert env.run("checkpoint", "protect", uuid).returncode == 0
    assert env.run("checkpoint", "unprotect", uuid).returncode == 0
    assert env.run("checkpoint", "delete", uuid).returncode == 0
    assert hub_snapshots(pve) == {}


def test_without_vm_snapshot_the_failure_names_the_privilege(sqlite_hubenv: HubEnv, pve: Any) -> None:
    grant_like_hubinfra(pve, without="VM.Snapshot")
    result = sqlite_hubenv.run("checkpoint", "create")
    assert result.returncode == 1
    assert "VM.Snapshot" in one_line_error(result.stderr)
