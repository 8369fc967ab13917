"""deploy/compose.yaml's structure, checked without a Docker engine (there is none on these machines).

`docker compose config` needs the compose plugin, which is not installed here either, so the file is
read as YAML and held to the rules the stack relies on: what runs, how it restarts, where secrets come
from, what is reachable, and that it agrees with nginx's config and with what hubinfra installs.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

from hubinfra.cloudinit import DATABASE_URL, DEPLOY_DIR, DEPLOY_FILES, REDIS_URL
from tests.deploy.nginx_harness import PRODUCTION_DIRECTIVES

COMPOSE = DEPLOY_DIR / "compose.yaml"
SERVICES = {"orchestrator", "worker", "postgres", "redis", "nginx"}
# compose.env (written by hub-firstboot) sets exactly these.
COMPOSE_ENV = {"HUB_SOURCE_DIR", "HUB_ETC"}
# Keys of the compose specification a service here may use: a typo (`healtcheck`) is caught, since
# compose without an engine to run it would not tell us until the VM boots.
SERVICE_KEYS = {
    "build", "image", "network_mode", "init", "entrypoint", "command", "environment", "secrets",
    "volumes", "depends_on", "healthcheck", "restart", "stop_grace_period", "security_opt", "logging",
    "ports", "user", "read_only", "tmpfs", "cap_drop", "cap_add", "ulimits", "labels",
}  # fmt: skip
SECRET_NAME = re.compile(r"PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|PRIVATE_?KEY|CREDENTIAL", re.I)
CREDENTIALS_IN_URL = re.compile(r"://[^/@\s]*:[^/@\s]+@")
OPAQUE = re.compile(r"^[A-Za-z0-9+/=_\-.]{20,}$")


def load(text: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(text)
    return document


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE.read_text())


def environment(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(str(item).split("=", 1) for item in env)
    return {str(k): str(v) for k, v in env.items()}


def argv(value: str | list[str]) -> list[str]:
    return shlex.split(value) if isinstance(value, str) else [str(v) for v in value]


def secret_literals(compose: dict[str, Any]) -> list[str]:
    """Environment entries that carry a secret value instead of naming a file that holds one."""
    found: list[str] = []
    for name, service in compose["services"].items():
        for key, value in environment(service).items():
            where = f"{name}.environment.{key}"
            if SECRET_NAME.search(key) and not key.endswith("_FILE"):
                found.append(f"{where}: a secret by name; pass it as a *_FILE pointing into /run/secrets")
            elif key.endswith("_FILE") and SECRET_NAME.search(key) and not value.startswith("/run/secrets/"):
                found.append(f"{where}: a secret file outside /run/secrets")
            elif CREDENTIALS_IN_URL.search(value):
                found.append(f"{where}: a URL with credentials")
            elif OPAQUE.match(value) and "/" not in value:
                found.append(f"{where}: looks like a key or password")
    return found


def published_beyond_loopback(service: dict[str, Any]) -> list[str]:
    bad: list[str] = []
    for port in service.get("ports", []):
        if isinstance(port, dict):
            host_ip = str(port.get("host_ip", ""))
            text = repr(port)
        else:
            text = str(port)
            host_ip = text.rsplit(":", 2)[0] if text.count(":") == 2 else ""
        if host_ip != "127.0.0.1":
            bad.append(text)
    return bad


def test_the_five_services_and_nothing_else(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == SERVICES
    for name, service in compose["services"].items():
        unknown = set(service) - SERVICE_KEYS
        assert not unknown, f"{name}: unknown keys {unknown}"
        assert "image" in service, name


def test_every_service_has_a_health_check_and_restarts_on_failure(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        check = service.get("healthcheck")
        assert check, f"{name} has no healthcheck"
        test = check["test"]
        assert test[0] in {"CMD", "CMD-SHELL"} and len(test) > 1, f"{name}: {test}"
        assert {"interval", "timeout", "retries"} <= set(check), f"{name}: {check}"
        # on-failure, not always/unless-stopped: after boot hub.service starts the stack, after the
        # identity check (see the comment at the top of compose.yaml).
        assert service.get("restart") == "on-failure", f"{name}: restart {service.get('restart')!r}"


def test_secrets_are_files_and_each_one_used_is_declared(compose: dict[str, Any]) -> None:
    declared = compose["secrets"]
    assert declared, "the stack has secrets (settings with the Proxmox token, database password)"
    for name, secret in declared.items():
        assert set(secret) == {"file"}, f"secret {name} must be a file: secret, not {secret}"
    for name, service in compose["services"].items():
        for used in service.get("secrets", []):
            used_name = used if isinstance(used, str) else used["source"]
            assert used_name in declared, f"{name} uses undeclared secret {used_name}"
    postgres = environment(compose["services"]["postgres"])
    assert postgres["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_password"
    assert "postgres_password" in compose["services"]["postgres"]["secrets"]


def test_no_environment_value_is_a_secret_literal(compose: dict[str, Any]) -> None:
    assert secret_literals(compose) == []


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("POSTGRES_PASSWORD", "hunter2"),
        ("HUB_PROXMOX_API_TOKEN", "hub@pve!hub=5ec1e7"),
        ("HUB_DATABASE_URL", "postgresql+psycopg://hub:hunter2@127.0.0.1:5432/hub"),
        ("SOMETHING", "c0ffee0ddba11c0ffee0ddba11c0ffee"),
        ("POSTGRES_PASSWORD_FILE", "/etc/hub/secrets/postgres_password"),
    ],
)
def test_the_secret_literal_check_has_teeth(compose: dict[str, Any], key: str, value: str) -> None:
    tampered = load(COMPOSE.read_text())
    tampered["services"]["orchestrator"]["environment"][key] = value
    assert len(secret_literals(tampered)) == 1


def test_postgres_and_redis_are_reachable_on_loopback_only(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name, service in services.items():
        assert published_beyond_loopback(service) == [], name
    # Host networking: what the server binds is what is reachable, so the commands must say loopback.
    assert services["postgres"]["network_mode"] == "host"
    assert "listen_addresses=127.0.0.1" in argv(services["postgres"]["command"])
    redis = argv(services["redis"]["command"])
    assert redis[redis.index("--bind") + 1 :][:1] == ["127.0.0.1"]
    assert redis[redis.index("--protected-mode") + 1] == "yes"
    # ... and the runtime (hubinfra's settings file) looks for them exactly there.
    database = urlsplit(DATABASE_URL)
    assert (database.hostname, database.port) == ("127.0.0.1", 5432)
    assert database.password is None, "the database password comes from PGPASSFILE, not the URL"
    assert "port=5432" in argv(services["postgres"]["command"])
    cache = urlsplit(REDIS_URL)
    assert (cache.hostname, cache.port) == ("127.0.0.1", int(redis[redis.index("--port") + 1]))


def test_published_port_check_has_teeth() -> None:
    assert published_beyond_loopback({"ports": ["6379:6379"]}) == ["6379:6379"]
    assert published_beyond_loopback({"ports": ["0.0.0.0:5432:5432"]}) == ["0.0.0.0:5432:5432"]
    assert published_beyond_loopback({"ports": ["127.0.0.1:5432:5432"]}) == []


def test_orchestrator_migrates_then_serves_where_nginx_proxies(compose: dict[str, Any]) -> None:
    orchestrator = compose["services"]["orchestrator"]
    script = argv(orchestrator["entrypoint"])[-1]
    upgrade, serve = script.index("hubctl db upgrade"), script.index("hubctl serve")
    assert upgrade < serve and "&&" in script[upgrade:serve]
    serve_args = shlex.split(script[serve:])
    upstream = PRODUCTION_DIRECTIVES["upstream"].removeprefix("server ").rstrip(";")
    host = serve_args[serve_args.index("--host") + 1]
    port = serve_args[serve_args.index("--port") + 1]
    assert f"{host}:{port}" == upstream
    for dependency in ("postgres", "redis"):
        assert orchestrator["depends_on"][dependency]["condition"] == "service_healthy"
    assert environment(orchestrator)["HUB_CONFIG_FILE"] == "/run/secrets/hub_settings"


def test_nginx_gets_the_config_and_certificates_hubinfra_installs(compose: dict[str, Any]) -> None:
    mounts = {}
    for volume in compose["services"]["nginx"]["volumes"]:
        source, target, *_ = volume.replace("${HUB_ETC:-/etc/hub}", "/etc/hub").split(":")
        mounts[target] = source
    assert mounts["/etc/nginx/conf.d/default.conf"] == DEPLOY_FILES["deploy/nginx/hub.conf"]
    for tag in ("certificate", "key"):
        path = Path(PRODUCTION_DIRECTIVES[tag].split()[-1].rstrip(";"))
        assert str(path.parent) in mounts, f"{path} is not mounted into the nginx container"


def test_only_variables_that_compose_env_sets_and_each_with_a_default() -> None:
    text = COMPOSE.read_text()
    references = re.findall(r"\$\{([^}]*)\}", text)
    assert references
    for reference in references:
        name, sep, default = reference.partition(":-")
        assert name in COMPOSE_ENV, f"${{{reference}}}: compose.env does not set {name}"
        assert sep and default.startswith("/"), f"${{{reference}}} needs a default path"


def test_the_worker_service_scales_on_the_orchestrators_image_and_settings(compose: dict[str, Any]) -> None:
    """`docker compose up --scale worker=N` must work: nothing in the service may be per-replica."""
    services = compose["services"]
    worker, orchestrator = services["worker"], services["orchestrator"]
    for per_replica in ("container_name", "hostname", "ports"):
        assert per_replica not in worker, f"worker.{per_replica} would make --scale fail or collide"
    assert "build" not in worker, "one build (the orchestrator's), one image for both"
    assert worker["image"] == orchestrator["image"]
    command = argv(worker["entrypoint"])
    assert command[:2] == ["hubctl", "worker"]
    # The same settings and secrets as the orchestrator: the same database and Redis broker.
    assert environment(worker) == environment(orchestrator)
    assert worker["secrets"] == orchestrator["secrets"]
    assert worker["volumes"] == orchestrator["volumes"]
    assert worker["depends_on"]["orchestrator"]["condition"] == "service_healthy"  # schema migrated
    assert worker["depends_on"]["redis"]["condition"] == "service_healthy"
    assert worker["init"] is True  # tini forwards SIGTERM: the worker stops gracefully
    grace = int(str(worker["stop_grace_period"]).removesuffix("s"))
    from runtime.serve import SHUTDOWN_GRACE_MS

    assert grace > SHUTDOWN_GRACE_MS / 1000, "compose would SIGKILL before the running job's grace ends"


def _alive_check(compose: dict[str, Any], path: Path) -> list[str]:
    worker = compose["services"]["worker"]
    command = argv(worker["entrypoint"])
    alive = command[command.index("--alive-file") + 1]
    test = worker["healthcheck"]["test"]
    assert test[0] == "CMD" and alive in test[-1], "the health check reads the file the worker touches"
    return [sys.executable, *[part.replace(alive, str(path)) for part in test[2:]]]


def test_the_worker_health_check_follows_its_heartbeat_file(compose: dict[str, Any], tmp_path: Path) -> None:
    alive = tmp_path / "alive"
    check = _alive_check(compose, alive)
    assert subprocess.run(check, check=False, timeout=30).returncode != 0  # never heartbeated
    alive.touch()
    assert subprocess.run(check, check=False, timeout=30).returncode == 0
    old = time.time() - 3600
    os.utime(alive, (old, old))
    assert subprocess.run(check, check=False, timeout=30).returncode != 0  # stopped heartbeating
