"""Cloud-init user data for a Hub VM, and the runtime settings file it writes.

The runtime is installed in the VM from a checkout of `runtime.ref` and exactly that commit's
`uv.lock` (`uv sync --frozen --no-default-groups` in the orchestrator image, deploy/compose.yaml), so
a first boot never resolves dependencies anew.

Pure functions (no pulumi): the components call them inside `Output.apply` because the settings
carry the API token, which only exists once the token resource is created.

The deployment files (compose, nginx, systemd) are read from `deploy/` in this repository at program
time, so the VM runs exactly what is reviewed in the repo; there is no second copy here.
"""

from __future__ import annotations

import functools
import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from hubcore.contract import Environment, HubType, check_hub_type
from hubinfra.config import CheckpointPolicy, ParamValue
from hubinfra.quotas import PoolLimits

REPO_ROOT = Path(__file__).resolve().parent.parent
DEPLOY_DIR = REPO_ROOT / "deploy"

# Where things live inside the Hub VM. The runtime reads HUB_CONFIG_FILE; compose mounts these.
ETC_DIR = "/etc/hub"
SETTINGS_PATH = f"{ETC_DIR}/hub.yaml"
CA_BUNDLE_PATH = f"{ETC_DIR}/proxmox-ca.pem"
SOURCE_DIR = "/opt/hub/src"

IDENTITY_CHECK_PATH = "/usr/local/sbin/hub-identity-check"

# repo-relative source -> path in the VM
DEPLOY_FILES: dict[str, str] = {
    "deploy/compose.yaml": f"{ETC_DIR}/compose.yaml",
    "deploy/nginx/hub.conf": f"{ETC_DIR}/nginx/hub.conf",
    "deploy/systemd/hub.service": "/etc/systemd/system/hub.service",
    "deploy/hub-identity-check": IDENTITY_CHECK_PATH,
}
# Files that must be executable in the VM; everything else is 0644.
EXECUTABLE_FILES = frozenset({IDENTITY_CHECK_PATH})

# Fixed namespace for the VMs' SMBIOS uuids: the same stack, vmid and name always give the same uuid,
# so the settings file can name the VM it was written for (see hub_vm_uuid).
VM_UUID_NAMESPACE = uuid.UUID("5d0c8f0e-6b1d-4e59-9a53-2f3c0b1e7a41")

# The orchestrator runs with host networking and reaches PostgreSQL and Redis on loopback ports that
# compose publishes on 127.0.0.1 only. The database password never leaves the VM: first boot
# generates it and libpq reads it from PGPASSFILE, so the URL carries no secret.
DATABASE_URL = "postgresql+psycopg://hub@127.0.0.1:5432/hub"
REDIS_URL = "redis://127.0.0.1:6379/0"

_FIRSTBOOT = """#!/bin/sh
# Idempotent first-boot set-up of the Hub VM; safe to re-run after a crash at any step.
set -eu
umask 077
mkdir -p {etc}/secrets {etc}/tls
if [ ! -s {etc}/secrets/postgres_password ]; then
  openssl rand -hex 32 > {etc}/secrets/postgres_password
fi
printf '127.0.0.1:5432:hub:hub:%s\\n' "$(cat {etc}/secrets/postgres_password)" > {etc}/secrets/pgpass
# compose mounts the CA bundle unconditionally; an empty file is ignored when no bundle is configured.
[ -e {etc}/proxmox-ca.pem ] || : > {etc}/proxmox-ca.pem
if [ ! -s {etc}/tls/hub.key ]; then
  # Self-signed until an operator installs a real certificate at the same paths.
  openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj "/CN=$(hostname -f)" \\
    -keyout {etc}/tls/hub.key -out {etc}/tls/hub.crt
fi
# Private repositories: an operator-installed read-only deploy key (never in user data, which every
# clone and the Pulumi state would carry); see docs/operator-guide.md "Private repository access".
if [ -s {etc}/secrets/deploy_key ]; then
  GIT_SSH_COMMAND="ssh -i {etc}/secrets/deploy_key -o IdentitiesOnly=yes"
  export GIT_SSH_COMMAND="$GIT_SSH_COMMAND -o StrictHostKeyChecking=accept-new"
fi
if [ ! -d {src}/.git ]; then
  git init --quiet {src}
  git -C {src} remote add origin {repo}
fi
# The ref as the remote has it now (a branch, tag or full commit id), never a stale local branch.
if ! git -C {src} fetch --quiet --depth 1 origin {ref}; then
  echo "hub-firstboot: cannot fetch {ref} from the runtime repository; for a private one install" \
    "{etc}/secrets/deploy_key and run /usr/local/sbin/hub-firstboot again" >&2
  exit 1
fi
git -C {src} checkout --quiet --detach FETCH_HEAD
# What runs, recorded: the image installs exactly this commit's uv.lock (uv sync --frozen).
git -C {src} rev-parse HEAD > {etc}/source-commit
printf 'HUB_SOURCE_DIR=%s\\nHUB_ETC=%s\\n' {src} {etc} > {etc}/compose.env
systemctl daemon-reload
systemctl enable --now qemu-guest-agent
systemctl enable --now hub.service
"""


@dataclass(frozen=True, slots=True)
class RuntimeSettings:
    """The runtime's settings file (HUB_CONFIG_FILE), lowercase keys as the runtime reads them.

    The environment and hub type are checked against the runtime's pairing rule when the file is
    built, so hubinfra never writes a pair the runtime would refuse at boot.
    """

    environment: Environment | str
    proxmox_url: str
    proxmox_api_token: str
    proxmox_insecure: bool
    node: str
    vmid: int
    checkpoints: CheckpointPolicy
    hub_type: HubType | str
    hub_label: str
    vm_uuid: str
    proxmox_ca_bundle: str | None = None
    experiment: str | None = None
    source_vmid: int | None = None
    source_checkpoint: str | None = None
    params: Mapping[str, ParamValue] = field(default_factory=lambda: dict[str, ParamValue]())
    # The bootstrap API token's SHA-256: the runtime stores it (TokenStore.ensure) at start, so the
    # operator can call the API with the token from `pulumi stack output --show-secrets apiToken`.
    api_token_sha256: str | None = None
    # Task machines (issue 11): the Hub's own pool, the template it clones them from, the vnets it
    # attaches them to, and the most its pool may hold (hubinfra/quotas.py `pool_limits`).
    pool: str | None = None
    task_template_vmid: int | None = None
    task_networks: tuple[str, ...] = ()
    pool_limits: PoolLimits | None = None

    def __post_init__(self) -> None:
        check_hub_type(environment=Environment(self.environment), hub_type=HubType(self.hub_type))

    def as_dict(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            # Plain strings: YAML's safe dumper does not represent enum members.
            "environment": Environment(self.environment).value,
            "database_url": DATABASE_URL,
            "redis_url": REDIS_URL,
            "proxmox_url": self.proxmox_url.rstrip("/"),
            "proxmox_api_token": self.proxmox_api_token,
            "proxmox_insecure": self.proxmox_insecure,
            "node": self.node,
            "vmid": self.vmid,
            # The SMBIOS uuid of the VM this file was written for; hub-identity-check (and the
            # runtime) refuse to start when /sys/class/dmi/id/product_uuid differs, e.g. in a clone.
            "vm_uuid": self.vm_uuid,
            "checkpoint_schedule": self.checkpoints.schedule,
            "keep_last": self.checkpoints.keep_last,
            "keep_hourly": self.checkpoints.keep_hourly,
            "keep_daily": self.checkpoints.keep_daily,
            "keep_weekly": self.checkpoints.keep_weekly,
            "keep_monthly": self.checkpoints.keep_monthly,
            "hub_type": HubType(self.hub_type).value,
            "hub_label": self.hub_label,
            "params": dict(self.params),
        }
        if self.proxmox_ca_bundle is not None:
            doc["proxmox_ca_bundle"] = self.proxmox_ca_bundle
        if self.experiment is not None:
            doc["experiment"] = self.experiment
        if self.source_vmid is not None:
            doc["source_vmid"] = self.source_vmid
        if self.source_checkpoint is not None:
            doc["source_checkpoint"] = self.source_checkpoint
        if self.api_token_sha256 is not None:
            doc["api_token_sha256"] = self.api_token_sha256
        if self.pool is not None:
            doc["pool"] = self.pool
        if self.task_template_vmid is not None:
            doc["task_template_vmid"] = self.task_template_vmid
        if self.task_networks:
            doc["task_networks"] = list(self.task_networks)
        if self.pool_limits is not None:
            doc["pool_max_cores"] = self.pool_limits.cores
            doc["pool_max_memory_mib"] = self.pool_limits.memory_mib
            doc["pool_max_disk_gb"] = self.pool_limits.disk_gb
            doc["pool_max_machines"] = self.pool_limits.machines
        return doc

    def render(self) -> str:
        """`yaml.safe_dump(self.as_dict(), sort_keys=False)`, entry by entry.

        Most entries are the same in every hub of a stack (URLs, node, schedule, retention), so each
        top-level `key: scalar` entry is dumped once and reused; a top-level block-mapping entry is
        emitted the same wherever it stands, so the concatenation is the one-shot dump
        (tests/hubinfra/test_cloudinit_render.py). Nested values (params) are dumped each time.
        """
        return "".join(
            _scalar_entry(key, value) if _is_scalar(value) else _dump_settings({key: value})
            for key, value in self.as_dict().items()
        )


def _is_scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _dump_settings(value: Any) -> str:
    return yaml.safe_dump(value, sort_keys=False)


# typed: 1 and True are equal keys to an untyped cache, and dump as `1` and `true`.
@functools.lru_cache(maxsize=4096, typed=True)
def _scalar_entry(key: str, value: str | int | float | bool | None) -> str:
    return _dump_settings({key: value})


def snippet_file_name(vm_name: str, kind: str, content: str) -> str:
    """A content-addressed snippet name: a changed content is a new file, never the same path."""
    return f"{vm_name}-{kind}-{hashlib.sha256(content.encode()).hexdigest()[:12]}.yaml"


def hub_vm_uuid(*, stack: str, vm_id: int, name: str) -> str:
    """The SMBIOS uuid a Hub VM (or clone) gets: stable for its stack, vmid and name."""
    return str(uuid.uuid5(VM_UUID_NAMESPACE, f"hub/{stack}/{vm_id}/{name}"))


def token_string(*, user_id: str, token_name: str, value: str) -> str:
    """`user@realm!tokenid=secret`, whether the provider returned the full form or the bare secret."""
    if "=" in value and "!" in value.split("=", 1)[0]:
        return value
    return f"{user_id}!{token_name}={value}"


def read_deploy_files(deploy_dir: Path = DEPLOY_DIR) -> dict[str, str]:
    """The real deployment files from the repo, keyed by their path in the VM."""
    repo = deploy_dir.parent
    return {target: (repo / source).read_text() for source, target in DEPLOY_FILES.items()}


PACKAGES = ("qemu-guest-agent", "docker.io", "docker-compose-v2", "git", "openssl")


def _file_entry(path: str, permissions: str, content: str) -> dict[str, Any]:
    return {"path": path, "permissions": permissions, "owner": "root:root", "content": content}


def _deploy_entries(deploy_files: Mapping[str, str]) -> list[dict[str, Any]]:
    return [
        _file_entry(path, "0755" if path in EXECUTABLE_FILES else "0644", content)
        for path, content in sorted(deploy_files.items())
    ]


def _firstboot_entry(repo_url: str, ref: str) -> dict[str, Any]:
    script = _FIRSTBOOT.format(etc=ETC_DIR, src=SOURCE_DIR, repo=_sh_quote(repo_url), ref=_sh_quote(ref))
    return _file_entry("/usr/local/sbin/hub-firstboot", "0755", script)


def user_data_document(
    *,
    hostname: str,
    settings: RuntimeSettings,
    repo_url: str,
    ref: str,
    ssh_keys: list[str],
    deploy_files: Mapping[str, str],
    ca_bundle_pem: str | None = None,
) -> dict[str, Any]:
    """What the `#cloud-config` says: packages, the settings file, the deploy files, first boot.

    `render_user_data` writes exactly `yaml.safe_dump` of it (tests/hubinfra/test_cloudinit_render.py).
    """
    files = [
        _file_entry(SETTINGS_PATH, "0600", settings.render()),
        *_deploy_entries(deploy_files),
        _firstboot_entry(repo_url, ref),
    ]
    if ca_bundle_pem is not None:
        files.append(_file_entry(CA_BUNDLE_PATH, "0644", ca_bundle_pem))
    document: dict[str, Any] = {
        "hostname": hostname,
        "manage_etc_hosts": True,
        "timezone": "UTC",
        "package_update": True,
        "packages": list(PACKAGES),
        "write_files": files,
        "runcmd": [["/usr/local/sbin/hub-firstboot"]],
    }
    if ssh_keys:
        document["ssh_authorized_keys"] = list(ssh_keys)
    return document


def yaml_dump(value: Any, *, width: int | None = None) -> str:
    """`yaml.safe_dump` in insertion order: the one way hubinfra writes YAML for a VM."""
    text: str = yaml.safe_dump(value, sort_keys=False, width=width)
    return text


def _dump(value: Any) -> str:
    return yaml_dump(value, width=1000)


# The parts every Hub VM of a stack shares (the deploy files, the first-boot script, the CA bundle) are
# the bulk of the user data: dumped once per program and spliced, not re-emitted per hub. PyYAML
# writes a block sequence under a top-level key without indentation ("key:" then "- item" at column
# 0), exactly as it writes a top-level sequence, so the pieces concatenate to the one-shot dump.
@functools.lru_cache(maxsize=16)
def _deploy_files_yaml(deploy_files: tuple[tuple[str, str], ...]) -> str:
    return _dump(_deploy_entries(dict(deploy_files)))


@functools.lru_cache(maxsize=16)
def _firstboot_yaml(repo_url: str, ref: str) -> str:
    return _dump([_firstboot_entry(repo_url, ref)])


@functools.lru_cache(maxsize=16)
def _ca_bundle_yaml(ca_bundle_pem: str) -> str:
    return _dump([_file_entry(CA_BUNDLE_PATH, "0644", ca_bundle_pem)])


def render_user_data(
    *,
    hostname: str,
    settings: RuntimeSettings,
    repo_url: str,
    ref: str,
    ssh_keys: list[str],
    deploy_files: Mapping[str, str],
    ca_bundle_pem: str | None = None,
) -> str:
    """The `#cloud-config` text of `user_data_document(...)`, with the shared parts dumped once."""
    head = {
        "hostname": hostname,
        "manage_etc_hosts": True,
        "timezone": "UTC",
        "package_update": True,
        "packages": list(PACKAGES),
    }
    parts = [
        "#cloud-config\n",
        _dump(head),
        "write_files:\n",
        _dump([_file_entry(SETTINGS_PATH, "0600", settings.render())]),
        _deploy_files_yaml(tuple(sorted(deploy_files.items()))) if deploy_files else "",
        _firstboot_yaml(repo_url, ref),
        _ca_bundle_yaml(ca_bundle_pem) if ca_bundle_pem is not None else "",
        _dump({"runcmd": [["/usr/local/sbin/hub-firstboot"]]}),
    ]
    if ssh_keys:
        parts.append(_dump({"ssh_authorized_keys": list(ssh_keys)}))
    return "".join(parts)


def render_clone_user_data(*, hostname: str, settings_text: str, ca_bundle_pem: str | None = None) -> str:
    """User data for a snapshot clone: the system is already installed, only its identity changes.

    It rewrites the settings file (and CA bundle) that the clone inherited from the source's disk.
    `hub.service` is ordered after cloud-init.service (where write_files runs), so the runtime never
    starts on the inherited file; `hub-identity-check` is the second line of defence.
    """
    files: list[dict[str, Any]] = [
        {"path": SETTINGS_PATH, "permissions": "0600", "owner": "root:root", "content": settings_text}
    ]
    if ca_bundle_pem is not None:
        files.append(
            {"path": CA_BUNDLE_PATH, "permissions": "0644", "owner": "root:root", "content": ca_bundle_pem}
        )
    document: dict[str, Any] = {
        "hostname": hostname,
        "manage_etc_hosts": True,
        # Every boot, before any unit of ours starts: drop what the source's instances left on disk.
        "bootcmd": [["sh", "-c", SCRUB_INHERITED_INSTANCES]],
        "write_files": files,
    }
    return "#cloud-config\n" + yaml.safe_dump(document, sort_keys=False, width=1000)


# cloud-init keeps each instance's user data (user-data.txt, cloud-config.txt, obj.pkl) under
# /var/lib/cloud/instances/<instance-id>/; a snapshot clone therefore carries the SOURCE's user data,
# with the source's settings file and token. The clone's own instance is the one /var/lib/cloud/instance
# points at (its instance-id differs); every other directory is removed, on every boot. `CLOUD_ROOT`
# lets a test run the same script on a directory tree.
SCRUB_INHERITED_INSTANCES = (
    'root="${CLOUD_ROOT:-/var/lib/cloud}"; '
    'current="$(readlink -f "$root/instance" || true)"; '
    'for d in "$root"/instances/*; do '
    '[ -e "$d" ] || continue; '
    '[ "$(readlink -f "$d")" = "$current" ] || rm -rf "$d"; '
    "done"
)


def instance_id_for(name: str, user_data: str) -> str:
    """An instance-id that changes whenever the user data does, so cloud-init re-runs on the clone."""
    return f"{name}-{hashlib.sha256(user_data.encode()).hexdigest()[:16]}"


def render_meta_data(*, instance_id: str, hostname: str) -> str:
    return yaml.safe_dump({"instance-id": instance_id, "local-hostname": hostname}, sort_keys=False)


def parse_user_data(text: str) -> dict[str, Any]:
    """Inverse of render_user_data, for tests and for operators inspecting a rendered snippet."""
    if not text.startswith("#cloud-config\n"):
        raise ValueError("not a #cloud-config document")
    loaded: dict[str, Any] = yaml.safe_load(text)
    return loaded


def _sh_quote(value: str) -> str:
    return "'" + value.replace("'", "'\"'\"'") + "'"
