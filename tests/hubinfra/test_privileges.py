"""The privilege list itself, and that runtime-facing modules stay free of pulumi."""

from __future__ import annotations

import subprocess
import sys

from hubinfra.privileges import (
    FORBIDDEN_PRIVILEGES,
    HUB_PRIVILEGES,
    Scope,
    all_privileges,
    privileges_for,
)
from tests.hubinfra.harness import REPO


def test_every_privilege_has_a_reason_and_is_listed_once() -> None:
    names = [p.name for p in HUB_PRIVILEGES]
    assert len(names) == len(set(names))
    assert all(len(p.reason.split()) >= 3 for p in HUB_PRIVILEGES)


def test_design_privileges_present_and_forbidden_absent() -> None:
    granted = set(all_privileges(pve_major=9))
    needed = {"VM.Allocate", "VM.Clone", "VM.Snapshot", "VM.Snapshot.Rollback", "VM.PowerMgmt", "SDN.Use"}
    assert needed <= granted
    assert "VM.GuestAgent.Audit" in granted
    assert "VM.Monitor" in all_privileges(pve_major=8)
    assert not granted & set(FORBIDDEN_PRIVILEGES)
    for forbidden in ("Permissions.Modify", "User.Modify", "Sys.Modify", "Sys.Console", "Datastore.Allocate"):
        assert forbidden in FORBIDDEN_PRIVILEGES


def test_scopes_are_narrow() -> None:
    # Nothing on nodes: Sys.Audit there reads every tenant's tasks; the Hub reads only its own.
    assert privileges_for(Scope.NODE) == []
    assert set(privileges_for(Scope.SDN_ZONE)) == {"SDN.Use", "SDN.Audit"}
    assert all(not p.startswith(("SDN.", "Sys.")) for p in privileges_for(Scope.POOL))


def test_runtime_facing_modules_do_not_import_pulumi() -> None:
    code = (
        "import sys, hubinfra.privileges, hubinfra.promotion, hubinfra.config, runtime.cli.promote; "
        "bad = [m for m in sys.modules if m.split('.')[0] in ('pulumi', 'pulumi_proxmoxve')]; "
        "sys.exit(f'imports {bad}' if bad else 0)"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
