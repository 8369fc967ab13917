"""`hubctl promote`: the diff, the allowlist, confirmation, exit codes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import typer
import yaml
from typer.testing import CliRunner

from hubinfra.promotion import plan_promotion
from runtime.cli.promote import promote
from tests.hubinfra.harness import REPO

app = typer.Typer()
app.command()(promote)
# A second command keeps typer in sub-command mode, as in hubctl.
app.command("noop")(lambda: None)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    for stack in ("dev", "prod"):
        shutil.copy(REPO / f"Pulumi.{stack}.yaml", tmp_path / f"Pulumi.{stack}.yaml")
    dev = yaml.safe_load((tmp_path / "Pulumi.dev.yaml").read_text())
    config = dev["config"]
    config["hub:runtime"]["ref"] = "v1.4.0"
    config["hub:runtime"]["params"]["gate_timeout_seconds"] = 90
    config["hub:network"]["allowedEgress"].append(
        {"cidr": "140.82.112.0/20", "ports": "443", "comment": "GitHub"}
    )
    # Environment-specific differences that must NOT move.
    config["hub:hubVm"]["cores"] = 6
    (tmp_path / "Pulumi.dev.yaml").write_text(yaml.safe_dump(dev, sort_keys=False))
    return tmp_path


def _invoke(project: Path, *args: str, stdin: str | None = None) -> Any:
    return CliRunner().invoke(app, ["promote", *args, "--project-dir", str(project)], input=stdin)


def _prod(project: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((project / "Pulumi.prod.yaml").read_text())["config"]
    return loaded


def test_plan_moves_only_promotable_keys(project: Path) -> None:
    plan = plan_promotion(project_dir=project, src="dev", dst="prod")
    assert [c.key for c in plan.changes] == [
        "hub:runtime.ref",
        "hub:runtime.params",
        "hub:network.allowedEgress",
    ]
    promoted = yaml.safe_load(plan.new_text)["config"]
    before = _prod(project)
    assert promoted["hub:runtime"]["ref"] == "v1.4.0"
    assert promoted["hub:runtime"]["params"]["gate_timeout_seconds"] == 90
    for key in before:
        if key not in ("hub:runtime", "hub:network"):
            assert promoted[key] == before[key], f"{key} is environment-specific"
    assert promoted["hub:network"] == dict(
        before["hub:network"], allowedEgress=promoted["hub:network"]["allowedEgress"]
    )
    assert promoted["hub:checkpoints"]["schedule"] == "0 0 * * *"
    assert promoted["hub:protect"] is True
    assert promoted["hub:hubVm"]["cores"] == 8
    assert promoted["hub:proxmox"]["endpoint"] == "https://pve.example.internal:8006"
    assert promoted["hub:templateVmId"] == before["hub:templateVmId"]
    assert "hub:experiments" not in promoted


def test_diff_shown_and_nothing_written_without_confirmation(project: Path) -> None:
    original = (project / "Pulumi.prod.yaml").read_text()
    result = _invoke(project, "dev", "prod", stdin="n\n")
    assert result.exit_code == 1
    assert "+    ref: v1.4.0" in result.output
    assert "-    ref: main" in result.output
    assert (project / "Pulumi.prod.yaml").read_text() == original


def test_no_terminal_and_no_yes_writes_nothing(project: Path) -> None:
    original = (project / "Pulumi.prod.yaml").read_text()
    result = _invoke(project, "dev", "prod", stdin="")
    assert result.exit_code == 1
    assert (project / "Pulumi.prod.yaml").read_text() == original


def test_confirmation_writes(project: Path) -> None:
    result = _invoke(project, "dev", "prod", stdin="y\n")
    assert result.exit_code == 0, result.output
    assert _prod(project)["hub:runtime"]["ref"] == "v1.4.0"


def test_yes_writes_and_keeps_the_header_comment(project: Path) -> None:
    result = _invoke(project, "dev", "prod", "--yes")
    assert result.exit_code == 0, result.output
    text = (project / "Pulumi.prod.yaml").read_text()
    assert text.startswith("# Production stack.")
    assert _prod(project)["hub:runtime"]["params"]["gate_timeout_seconds"] == 90
    again = _invoke(project, "dev", "prod", "--yes")
    assert again.exit_code == 0
    assert "nothing to promote" in again.output


def test_json_output_is_one_document(project: Path) -> None:
    result = _invoke(project, "dev", "prod", "--yes", "--json")
    assert result.exit_code == 0
    document = json.loads(result.stdout)
    assert document["written"] is True
    assert document["changes"][0]["key"] == "hub:runtime.ref"


def test_json_without_yes_declines(project: Path) -> None:
    result = _invoke(project, "dev", "prod", "--json")
    assert result.exit_code == 1
    assert json.loads(result.stdout)["written"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("dev", "staging"), "error: DST: no stack file"),
        (("qa", "prod"), "error: SRC: no stack file"),
        (("dev", "../etc"), "error: DST: '../etc' is not a valid stack name"),
        (("prod", "prod"), "error: DST: 'prod' is the same stack as SRC"),
    ],
)
def test_bad_stack_name_is_exit_2_with_one_line(project: Path, args: tuple[str, str], message: str) -> None:
    result = _invoke(project, *args)
    assert result.exit_code == 2
    lines = result.output.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(message)
    assert "Traceback" not in result.output


def test_invalid_result_is_refused(project: Path) -> None:
    dev = yaml.safe_load((project / "Pulumi.dev.yaml").read_text())
    dev["config"]["hub:runtime"]["ref"] = ""
    (project / "Pulumi.dev.yaml").write_text(yaml.safe_dump(dev))
    original = (project / "Pulumi.prod.yaml").read_text()
    result = _invoke(project, "dev", "prod", "--yes")
    assert result.exit_code == 1
    assert "hub:runtime.ref" in result.output
    assert (project / "Pulumi.prod.yaml").read_text() == original


def _changed_lines(before: str, after: str) -> tuple[list[str], list[str]]:
    import difflib

    removed, added = [], []
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        if line.startswith("- "):
            removed.append(line[2:])
        elif line.startswith("+ "):
            added.append(line[2:])
    return removed, added


ODD_PROD = """# Production stack (hand-edited).
config:
  hub:environment: production     # never promoted
  hub:proxmox:
      endpoint:   https://pve.example.internal:8006
      insecure: false
      pveMajor: 9
  hub:node: pve1
  hub:templateVmId: 9000
  hub:datastore: ceph-vm
  hub:snippetsDatastore: local
  hub:protect: true
  hub:hubType: production
  hub:hubLabel: prod
  hub:hubVm: {vmId: 100, name: hub-prod, cores: 8, memoryMib: 16384, diskGb: 200, ipv4Address: 10.20.0.10/24}
  hub:network:
    zone: hubprod
    bridge: vmbr0
    management: {vnet: hpmgmt, vlanTag: 20, cidr: 10.20.0.0/24, gateway: 10.20.0.1}
    tasks:
        - vnet: hptask1      # first task network
          vlanTag: 21
          cidr: 10.21.0.0/24
          gateway: 10.21.0.1
    isolatedVlans: {start: 2000, end: 2999}
    isolatedPrefix: 10.220.0.0/16
    allowedEgress:
        -   cidr: 151.101.0.0/16
            proto: tcp
            ports: "443"      # PyPI
            comment: PyPI (Fastly)

    proxmoxApi: [10.20.0.2/32]
    manageClusterFirewall: false
  hub:pool: {id: hub-prod}
  hub:quotas: {cores: 64, memoryMib: 131072, diskGb: 2000, vms: 20}

  # Daily checkpoints, kept for months.
  hub:checkpoints:
    schedule: 0 0 * * *
  hub:runtime:
    repoUrl:    "https://git.example.internal/hub/hub.git"   # the mirror
    ref: 'main'          # promoted from dev
    params:
      health_interval_seconds: 30   # seconds
# trailing comment, kept"""


def test_promotion_edits_only_the_promoted_keys_in_place(project: Path) -> None:
    (project / "Pulumi.prod.yaml").write_text(ODD_PROD)
    result = _invoke(project, "dev", "prod", "--yes")
    assert result.exit_code == 0, result.output
    text = (project / "Pulumi.prod.yaml").read_text()
    removed, added = _changed_lines(ODD_PROD, text)
    # Exactly the promoted values' lines: the ref (quoting and comment kept), one new param, one new
    # egress item (at the list's own indentation); every other byte as it was, comments included.
    assert removed == ["    ref: 'main'          # promoted from dev"]
    assert added == [
        # allowedEgress comes before runtime in this file
        "        -   cidr: 140.82.112.0/20",
        "            ports: '443'",
        "            comment: GitHub",
        "    ref: 'v1.4.0'          # promoted from dev",
        "      gate_timeout_seconds: 90",
    ]
    assert text.endswith("# trailing comment, kept")
    config = _prod(project)
    assert config["hub:runtime"]["params"] == {"health_interval_seconds": 30, "gate_timeout_seconds": 90}
    assert config["hub:network"]["allowedEgress"][-1]["cidr"] == "140.82.112.0/20"
    assert config["hub:hubVm"]["cores"] == 8


def test_the_committed_prod_file_changes_only_where_promoted(project: Path) -> None:
    original = (project / "Pulumi.prod.yaml").read_text()
    assert _invoke(project, "dev", "prod", "--yes").exit_code == 0
    removed, added = _changed_lines(original, (project / "Pulumi.prod.yaml").read_text())
    assert removed == ["    ref: main"]
    assert "    ref: v1.4.0" in added and len(added) == 5


def test_prod_to_dev_is_warned_about(project: Path) -> None:
    prod = yaml.safe_load((project / "Pulumi.prod.yaml").read_text())
    prod["config"]["hub:runtime"]["ref"] = "v0.9.0"
    (project / "Pulumi.prod.yaml").write_text(yaml.safe_dump(prod, sort_keys=False))
    result = _invoke(project, "prod", "dev", "--yes")
    assert result.exit_code == 0, result.output
    assert "warning: promoting from the production stack 'prod' into the development stack 'dev'" in (
        result.output
    )
    as_json = _invoke(project, "prod", "dev", "--json")
    assert json.loads(as_json.stdout)["warnings"][0].startswith("promoting from the production stack")
    forward = plan_promotion(project_dir=project, src="dev", dst="prod")
    assert forward.warnings == ()
