"""What ``hubctl serve`` on the embedded default (SQLite, in-process jobs, no Proxmox, no Redis) keeps
in memory for its whole life: none of the libraries it never uses there (issue 9's idle RSS; the
figure itself is measured by ``benchmarks.api_latency --rss-only``, never asserted).

Each check runs in a fresh interpreter: the test process has long since imported everything."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from runtime.db import Database
from tests.support.hubenv import REPO

# Loaded only when used: the Redis broker (redis-py and its observability package) with
# HUB_REDIS_URL, Alembic to migrate a database that is behind, the Proxmox client (requests,
# proxmoxer) and APScheduler with Proxmox configured, filelock to take a VM lock. (OpenTelemetry's
# API is not in the list: FastAPI itself imports it, in the bare app as well.)
NOT_ON_THE_EMBEDDED_DEFAULT = (
    "redis",
    "dramatiq.brokers.redis",
    "alembic",
    "mako",
    "pygments",
    "hubcore.proxmox.client",
    "requests",
    "urllib3",
    "proxmoxer",
    "apscheduler",
    "filelock",
)

# The service's own start-up on the embedded default, as runtime/serve.py builds it: every module it
# imports, the migration step on a database already at head, the job queue with its workers, the app.
SERVICE_START = """
import json, sys
from runtime import domains
from runtime.api.app import create_app
from runtime.jobs.queue import JobQueue
from runtime.metrics import Metrics
from runtime.serve import _migrate
from runtime.settings import load_settings
from runtime.wiring import Services

services = Services(load_settings())
before, after = _migrate(services.db)
queue = JobQueue(services, kinds=domains.job_kinds(), worker_threads=1)
queue.start_workers()
create_app(services=services, queue=queue, metrics=Metrics())
queue.stop_workers(timeout_ms=5000)
services.close()
print(json.dumps({"migrated": [before, after], "broker": type(queue.broker).__name__,
                  "modules": sorted(sys.modules)}))
"""


def _run(script: str, env: dict[str, str]) -> dict[str, object]:
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO, timeout=120, env=env
    )
    assert result.returncode == 0, result.stderr
    doc: dict[str, object] = json.loads(result.stdout.strip().splitlines()[-1])
    return doc


def _loaded(modules: object, names: tuple[str, ...]) -> set[str]:
    assert isinstance(modules, list)
    return {m for m in modules for name in names if m == name or m.startswith(name + ".")}


def _embedded_env(tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    Database(url).upgrade()  # at head before the service starts, as after its first start
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=url, HUB_LOCK_DIR=str(tmp_path / "locks"), PYTHONPATH=str(REPO))
    return env


def test_the_embedded_service_never_loads_redis_alembic_or_the_proxmox_client(tmp_path: Path) -> None:
    env = _embedded_env(tmp_path)
    head = Database(env["HUB_DATABASE_URL"]).head_revision()
    doc = _run(SERVICE_START, env)
    assert doc["migrated"] == [head, head]
    assert doc["broker"] == "StubBroker"
    assert not _loaded(doc["modules"], NOT_ON_THE_EMBEDDED_DEFAULT)


def test_the_job_queue_module_alone_loads_no_redis(tmp_path: Path) -> None:
    doc = _run(
        "import json, sys, runtime.jobs.queue; print(json.dumps({'modules': sorted(sys.modules)}))",
        _embedded_env(tmp_path),
    )
    assert "dramatiq" in {m.split(".")[0] for m in doc["modules"]}  # type: ignore[union-attr]
    assert not _loaded(doc["modules"], ("redis", "dramatiq.brokers.redis"))


def test_with_redis_configured_the_queue_is_on_dramatiqs_redis_broker(tmp_path: Path) -> None:
    # Building the broker opens no connection (redis-py connects on first command), so no server needed.
    env = {**_embedded_env(tmp_path), "HUB_REDIS_URL": "redis://127.0.0.1:1/0"}
    script = """
import json
from runtime import domains
from runtime.jobs.queue import JobQueue
from runtime.settings import load_settings
from runtime.wiring import Services
queue = JobQueue(Services(load_settings()), kinds=domains.job_kinds())
print(json.dumps({"broker": type(queue.broker).__module__ + "." + type(queue.broker).__name__}))
"""
    assert _run(script, env)["broker"] == "dramatiq.brokers.redis.RedisBroker"


def test_a_database_behind_the_code_is_still_migrated_by_alembic(tmp_path: Path) -> None:
    from alembic import command

    url = f"sqlite:///{tmp_path / 'hub.db'}"
    db = Database(url)
    command.upgrade(db.alembic_config(), "0007")  # one migration behind the code
    db.dispose()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env.update(HUB_DATABASE_URL=url, PYTHONPATH=str(REPO))
    script = """
import json, sys
from runtime.db import Database
from runtime.settings import load_settings
before, after = Database(load_settings().database_url).upgrade()
print(json.dumps({"migrated": [before, after], "alembic": "alembic" in sys.modules}))
"""
    doc = _run(script, env)
    head = db.head_revision()
    assert head != "0007"
    assert doc == {"migrated": ["0007", head], "alembic": True}


def test_the_proxmox_package_loads_its_client_on_first_use(tmp_path: Path) -> None:
    script = """
import json, sys
import hubcore.proxmox as proxmox
from hubcore.proxmox import ProxmoxError, VmRef
before = "hubcore.proxmox.client" in sys.modules or "requests" in sys.modules
from hubcore.proxmox import ProxmoxClient, Snapshot
import hubcore.proxmox.client as client
same = ProxmoxClient is client.ProxmoxClient and Snapshot is client.Snapshot
try:
    proxmox.NoSuchName
    missing = "no error"
except AttributeError as exc:
    missing = str(exc)
print(json.dumps({"before": before, "same": same, "missing": missing}))
"""
    doc = _run(script, _embedded_env(tmp_path))
    assert doc == {
        "before": False,
        "same": True,
        "missing": "module 'hubcore.proxmox' has no attribute 'NoSuchName'",
    }
