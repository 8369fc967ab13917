"""docs/operator-guide.md's commands refer to things that exist: privileges PVE knows, the program's
outputs, the template script; the committed stacks declare no experiment."""

from __future__ import annotations

import re
import subprocess

import yaml
from fakepve.shapes import PRIVILEGES as PVE9_PRIVILEGES

from tests.hubinfra.harness import REPO, Run

GUIDE = (REPO / "docs" / "operator-guide.md").read_text()


def _deployer_privileges() -> list[str]:
    match = re.search(r'pveum role add HubDeployer --privs "([^"]+)"', GUIDE.replace("\\\n", ""))
    assert match is not None
    return match.group(1).split(",")


def test_the_deploying_role_names_only_privileges_pve_9_knows() -> None:
    privileges = _deployer_privileges()
    assert len(privileges) == len(set(privileges))
    assert sorted(set(privileges) - set(PVE9_PRIVILEGES)) == []


def test_the_deploying_role_can_create_what_the_program_declares() -> None:
    # roles, users and tokens, ACLs, pools (with storage), SDN, firewall, VMs (clone, config, power).
    needed = {
        "Sys.Modify",
        "Realm.AllocateUser",
        "User.Modify",
        "Permissions.Modify",
        "Pool.Allocate",
        "Datastore.Allocate",
        "SDN.Allocate",
        "SDN.Use",
        "VM.Allocate",
        "VM.Clone",
        "VM.Config.Cloudinit",
        "VM.Config.Network",
        "VM.PowerMgmt",
        "VM.Migrate",
        "Datastore.AllocateSpace",
    }
    assert needed <= set(_deployer_privileges())


def _outputs_read_by_the_guide() -> set[str]:
    names: set[str] = set()
    for tail in re.findall(r"pulumi stack output ([^\n`]*)", GUIDE):
        tokens = iter(tail.replace(")", " ").replace('"', " ").split())
        for token in tokens:
            if token == "--stack":
                next(tokens, None)
            elif not token.startswith("-"):
                names.add(token)
                break
    return names


def test_the_outputs_the_guide_reads_exist(dev: Run) -> None:
    read = _outputs_read_by_the_guide()
    assert {"apiToken", "userDataFile", "hubVmId", "addresses"} <= read
    assert read <= set(dev.outputs)


def test_the_template_script_is_valid_bash() -> None:
    script = REPO / "scripts" / "build-template.sh"
    subprocess.run(["bash", "-n", str(script)], check=True, timeout=30)
    assert script.stat().st_mode & 0o111
    assert "--ide2" in script.read_text() and "qm template" in script.read_text()


def test_no_experiment_is_committed_and_the_guide_shows_one() -> None:
    for stack in ("dev", "prod"):
        assert "hub:experiments" not in yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    assert "hub:experiments:" in GUIDE and "faster-gate" in GUIDE
