"""The CLI loads a sub-app only when it is named, and help lists them all without loading any."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.support.hubenv import REPO

HEAVY = ("sqlalchemy", "alembic", "proxmoxer", "redis", "hubinfra", "fastapi", "dramatiq", "apscheduler")

PROBE = """
import json, sys
from runtime.cli import run
code = run(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _loaded(*args: str) -> tuple[int, str, set[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    doc = json.loads(result.stderr.strip().splitlines()[-1])
    top = {name.split(".")[0] for name in doc["modules"]}
    return doc["code"], result.stdout, top


def test_help_lists_every_command_and_imports_none_of_the_heavy_parts() -> None:
    code, out, top = _loaded("--help")
    assert code == 0
    for command in ("checkpoint", "db", "token", "promote", "reconcile", "health", "serve", "lab"):
        assert command in out
    assert not top & set(HEAVY), top & set(HEAVY)


@pytest.mark.parametrize("noun", ["checkpoint", "db", "token"])
def test_a_sub_app_help_loads_neither_the_api_nor_proxmox_nor_the_infra(noun: str) -> None:
    code, out, top = _loaded(noun, "--help")
    assert code == 0 and "Usage" in out
    loaded = top & {"fastapi", "proxmoxer", "redis", "hubinfra", "dramatiq", "alembic"}
    assert not loaded, loaded
