"""The sentinel's grant, exactly as hubinfra declares it, against fakepve's permission checks.

The ACL path and the role's privileges come from the program under mocks (hub:sentinel enabled);
the token then does what the recovery ladder needs on the Hub VM and is refused anything beyond:
another VM, config keys outside the description, cloning. Each privilege removed alone breaks the
call it is listed for (VM.Snapshot.Rollback is redundant beside VM.Snapshot: PVE's check is `any`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from hubcore.proxmox import ProxmoxClient
from hubinfra.privileges import sentinel_privileges
from tests.hubinfra.harness import Run, run_program
from tests.support.hubenv import HUB_VMID, NODE, TOKEN_ID, HubEnv

ACL = "proxmoxve:index/acl:Acl"
OTHER_VMID = 4242  # a task VM in the Hub's pool: never the sentinel's
TEMPLATE = 9000

Call = Callable[[Any], object]

LADDER: dict[str, Call] = {
    "VM.Audit": lambda api: api.nodes(NODE).qemu(HUB_VMID).status.current.get(),
    "VM.Snapshot": lambda api: api.nodes(NODE).qemu(HUB_VMID).snapshot.post(snapname="prerecovery"),
    "VM.PowerMgmt": lambda api: api.nodes(NODE).qemu(HUB_VMID).status.stop.post(),
    "VM.Config.Options": lambda api: api.nodes(NODE).qemu(HUB_VMID).config.put(description="lease: x"),
    "VM.Snapshot.Rollback": lambda api: api.nodes(NODE).qemu(HUB_VMID).snapshot("base").rollback.post(),
}
REDUNDANT = {"VM.Snapshot.Rollback"}
ALSO_ALLOWED: dict[str, Call] = {
    "read the description (lease, journal)": lambda api: api.nodes(NODE).qemu(HUB_VMID).config.get(),
    "list checkpoints": lambda api: api.nodes(NODE).qemu(HUB_VMID).snapshot.get(),
}
REFUSED: dict[str, Call] = {
    "another VM's status": lambda api: api.nodes(NODE).qemu(OTHER_VMID).status.current.get(),
    "stop another VM": lambda api: api.nodes(NODE).qemu(OTHER_VMID).status.stop.post(),
    "snapshot another VM": lambda api: api.nodes(NODE).qemu(OTHER_VMID).snapshot.post(snapname="other"),
    "resize the Hub VM": lambda api: api.nodes(NODE).qemu(HUB_VMID).config.put(cores=2),
    "clone the template": lambda api: api.nodes(NODE).qemu(TEMPLATE).clone.post(newid=9100, full=1),
}


@pytest.fixture(scope="module")
def sentinel_grant() -> tuple[str, list[str]]:
    run: Run = run_program("prod", edit=lambda c: c.__setitem__("hub:sentinel", {"enabled": True}))
    assert run.exit_code is None, run.errors
    (token_acl,) = [
        a.inputs for a in run.of_type(ACL) if str(a.inputs.get("tokenId", "")).endswith("!sentinel")
    ]
    (role,) = [
        r.inputs
        for r in run.of_type("proxmoxve:index/roleLegacy:RoleLegacy")
        if r.name.endswith("sentinel-role")
    ]
    assert role["roleId"] == token_acl["roleId"]
    return token_acl["path"], list(role["privileges"])


@pytest.fixture
def cluster(pve: Any) -> Any:
    pve.add_vm(
        TEMPLATE, "template", node=NODE, template=True, config={"scsi0": "local-lvm:base-9000-disk-0,size=8G"}
    )
    pve.add_vm(
        OTHER_VMID, "task", node=NODE, status="running", config={"scsi0": "local-lvm:vm-4242-disk-0,size=8G"}
    )
    pve.pools.setdefault("hub-prod", set()).update({HUB_VMID, OTHER_VMID, TEMPLATE})
    pve.vm(HUB_VMID).snapshots["base"] = {"description": "", "snaptime": 1}
    return pve


def _grant(pve: Any, grant: tuple[str, list[str]], *, without: str | None = None) -> None:
    path, privileges = grant
    assert path == f"/vms/{HUB_VMID}"
    pve.grant(TOKEN_ID, path, *[p for p in privileges if p != without])


def _status(env: HubEnv, call: Call) -> int:
    client = ProxmoxClient.from_access(env.settings().proxmox_access())
    api: Any = client._api  # pyright: ignore[reportPrivateUsage] - the raw API
    try:
        call(api)
    except Exception as exc:
        return int(getattr(exc, "status_code", 0) or 500)
    return 200


def test_every_sentinel_privilege_has_its_ladder_call() -> None:
    assert set(LADDER) == set(sentinel_privileges())


@pytest.mark.parametrize("what", [*LADDER, *ALSO_ALLOWED])
def test_the_ladder_works_with_the_declared_grant(
    what: str, sentinel_grant: tuple[str, list[str]], sqlite_hubenv: HubEnv, cluster: Any
) -> None:
    _grant(cluster, sentinel_grant)
    assert _status(sqlite_hubenv, {**LADDER, **ALSO_ALLOWED}[what]) == 200


@pytest.mark.parametrize("what", list(REFUSED))
def test_anything_beyond_is_refused(
    what: str, sentinel_grant: tuple[str, list[str]], sqlite_hubenv: HubEnv, cluster: Any
) -> None:
    _grant(cluster, sentinel_grant)
    assert _status(sqlite_hubenv, REFUSED[what]) == 403


@pytest.mark.parametrize("privilege", sorted(set(LADDER) - REDUNDANT))
def test_each_privilege_is_needed(
    privilege: str, sentinel_grant: tuple[str, list[str]], sqlite_hubenv: HubEnv, cluster: Any
) -> None:
    _grant(cluster, sentinel_grant, without=privilege)
    assert _status(sqlite_hubenv, LADDER[privilege]) == 403
