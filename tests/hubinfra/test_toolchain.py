"""What Pulumi runs to install the program's dependencies installs what the program imports.

`Pulumi.yaml` says `toolchain: uv`; the Python language host then runs `uv sync` (no other argument)
in the project with `UV_PROJECT_ENVIRONMENT=<virtualenv>` (pulumi/pulumi sdk/python/toolchain/uv.go,
`InstallDependencies` and `uvCommand`). A plain `uv sync` is exact: it installs the project, its
dependencies and the DEFAULT dependency groups and uninstalls anything else. pulumi and the provider
are therefore in the `infra` group, a default group (pyproject.toml `[tool.uv] default-groups`).

The same command is run here, offline from the warm uv cache, into a temporary environment; the Hub
VM's install (`--no-default-groups`) is shown to leave them out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.hubinfra.harness import REPO

UV = REPO / ".uv" / "bin" / "uv"


def _uv_sync(env_dir: Path, *extra: str) -> None:
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": os.environ.get("HOME", "/root"),
        "UV_PROJECT_ENVIRONMENT": str(env_dir),
        "UV_OFFLINE": "1",
    }
    if "UV_CACHE_DIR" in os.environ:
        env["UV_CACHE_DIR"] = os.environ["UV_CACHE_DIR"]
    lock = (REPO / "uv.lock").read_bytes()
    # Pulumi's arguments are exactly ["sync"]; offline (UV_OFFLINE) only so the test needs no network.
    subprocess.run([str(UV), "sync", "--quiet", *extra], cwd=REPO, env=env, check=True, timeout=300)
    assert (REPO / "uv.lock").read_bytes() == lock, "uv sync re-locked: uv.lock is out of date"


def _importable(env_dir: Path, *modules: str) -> dict[str, bool]:
    python = env_dir / "bin" / "python"
    return {
        m: subprocess.run([str(python), "-c", f"import {m}"], capture_output=True, timeout=120).returncode
        == 0
        for m in modules
    }


@pytest.fixture(scope="module")
def uv() -> Path:
    if not UV.exists():
        pytest.skip("scripts/setup.sh installs uv into .uv/")
    return UV


def test_pulumi_yaml_uses_the_uv_toolchain_in_dot_venv() -> None:
    options = yaml.safe_load((REPO / "Pulumi.yaml").read_text())["runtime"]["options"]
    assert options == {"toolchain": "uv", "virtualenv": ".venv"}


def test_pulumis_uv_sync_installs_the_program_and_the_vm_install_leaves_it_out(
    uv: Path, tmp_path: Path
) -> None:
    pulumi_env = tmp_path / "pulumi-venv"
    _uv_sync(pulumi_env)
    assert _importable(pulumi_env, "pulumi", "pulumi_proxmoxve", "hubinfra.stack", "runtime.cli") == {
        "pulumi": True,
        "pulumi_proxmoxve": True,
        "hubinfra.stack": True,
        "runtime.cli": True,
    }
    shutil.rmtree(pulumi_env)

    vm_env = tmp_path / "vm-venv"
    _uv_sync(vm_env, "--frozen", "--no-default-groups")
    assert _importable(vm_env, "pulumi", "pulumi_proxmoxve", "runtime.cli", "ruamel.yaml") == {
        "pulumi": False,
        "pulumi_proxmoxve": False,
        "runtime.cli": True,
        "ruamel.yaml": True,
    }
