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
