"""The CLI loads a sub-app only when it is named, and help lists them all without loading any; a
read command loads only what it reads with (timings: benchmarks/cli_startup.py, never asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime.db import Database
from tests.support.hubenv import REPO

HEAVY = ("sqlalchemy", "alembic", "proxmoxer", "redis", "hubinfra", "fastapi", "dramatiq", "apscheduler")

PROBE = """
import json, sys
from runtime.cli import run
code = run(sys.argv[1:])
print(json.dumps({"code": code, "modules": sorted(sys.modules)}), file=sys.stderr)
"""


def _loaded(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, set[str]]:
    return _probe(*args, env=env)[:3]


def _probe(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, set[str], list[str]]:
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=REPO, timeout=60, env=env
    )
    doc = json.loads(result.stderr.strip().splitlines()[-1])
    top = {name.split(".")[0] for name in doc["modules"]}
    return doc["code"], result.stdout, top, doc["modules"]


def _empty_hub(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a Hub on a migrated, empty SQLite database and no Proxmox or Redis."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    Database(url).upgrade()  # migrating needs Alembic; reading an up-to-date database must not
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=url, HUB_LOCK_DIR=str(tmp_path / "locks"), PYTHONPATH=str(REPO), **extra)
    return env


def test_help_lists_every_command_and_imports_none_of_the_heavy_parts() -> None:
    code, out, top = _loaded("--help")
    assert code == 0
    for command in ("checkpoint", "db", "token", "promote", "reconcile", "health", "serve", "lab"):
        assert command in out
    assert not top & set(HEAVY), top & set(HEAVY)


@pytest.mark.parametrize("noun", ["checkpoint", "db", "token", "fleet"])
def test_a_sub_app_help_loads_neither_the_api_nor_proxmox_nor_the_infra(noun: str) -> None:
    code, out, top = _loaded(noun, "--help")
    assert code == 0 and "Usage" in out
    loaded = top & {"fastapi", "proxmoxer", "redis", "hubinfra", "dramatiq", "alembic"}
    assert not loaded, loaded


def test_a_read_imports_neither_migrations_nor_proxmox_nor_redis_nor_rich(tmp_path: Path) -> None:
    code, out, top, modules = _probe("checkpoint", "list", "--json", env=_empty_hub(tmp_path))
    assert code == 0 and json.loads(out) == {"checkpoints": []}
    loaded = top & {*HEAVY, "rich", "pygments", "opentelemetry", "requests", "urllib3"} - {"sqlalchemy"}
    assert not loaded, loaded
    assert "runtime.wiring" not in modules  # it builds the Proxmox client and the lock: not for a read


def test_a_manual_schedule_needs_no_scheduler_to_validate(tmp_path: Path) -> None:
    env = _empty_hub(tmp_path, HUB_CHECKPOINT_SCHEDULE="manual")
    code, _, top = _loaded("checkpoint", "list", "--json", env=env)
    assert code == 0 and "apscheduler" not in top


def test_health_without_proxmox_loads_no_migrations_api_or_infra(tmp_path: Path) -> None:
    """Without Proxmox and Redis configured, health loads neither client (redis-py brings
    OpenTelemetry; the Proxmox client brings requests/urllib3/proxmoxer)."""
    env = _empty_hub(tmp_path)
    code, out, top = _loaded("health", "--json", env=env)
    head = Database(env["HUB_DATABASE_URL"]).head_revision()
    assert code == 1 and json.loads(out)["checks"][0] == {
        "name": "database",
        "status": "healthy",
        "detail": f"reachable, schema {head} ({env['HUB_DATABASE_URL']})",  # which database is used
    }
    loaded = top & {"alembic", "fastapi", "hubinfra", "dramatiq", "rich", "redis", "proxmoxer", "requests"}
    assert not loaded, loaded
    # A manual schedule (the default outside production) has no trigger to compute: no APScheduler.
    assert json.loads(out)["checks"][1]["detail"].startswith("manual schedule")
    assert "apscheduler" not in top, "health imported APScheduler for a manual schedule"


def test_health_with_a_schedule_still_says_when_one_was_due(tmp_path: Path) -> None:
    code, out, _ = _loaded("health", "--json", env=_empty_hub(tmp_path, HUB_CHECKPOINT_SCHEDULE="0 3 * * *"))
    assert code == 1 and json.loads(out)["checks"][1] == {
        "name": "checkpoints",
        "status": "degraded",
        "detail": "scheduled checkpoints, but none has completed yet",
    }
