"""Fixtures for the machines domain: a three-node fake cluster with the Hub's pool, a template on
another node than the Hub, and a foreign VM in the same pool (which no test may see touched)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hubenv import HubEnv, make_env
from tests.support.service import Service, serve

POOL = "hub-dev"
TEMPLATE = 9000
FOREIGN = 4242


def machine_env(pve: Any, cafile: str, tmp: Path, url: str, **extra: str) -> HubEnv:
    values = {
        "HUB_POOL": POOL,
        "HUB_TASK_TEMPLATE_VMID": str(TEMPLATE),
        "HUB_TASK_NETWORKS": "tasknet1,tasknet2",
        "HUB_MACHINE_CI_USER": "hub",
        "HUB_MACHINE_SSH_KEYS": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB test@hub",
    }
    values.update(extra)
    env = make_env(pve, cafile, tmp, url, **values)
    env.services().db.upgrade()
    return env


@pytest.fixture
def cluster(pve: Any) -> Any:
    pve.add_node("pve2")
    pve.add_node("pve3")
    pve.pools[POOL] = set()
    pve.add_vm(
        TEMPLATE,
        "task-template",
        node="pve2",
        template=True,
        config={
            "scsi0": "local-lvm:base-9000-disk-0,size=8G",
            "cores": 1,
            "memory": 512,
            "ide2": "local-lvm:cloudinit,media=cdrom",
        },
    )
    pve.add_vm(
        FOREIGN,
        "someone-elses",
        node="pve3",
        status="running",
        pool=POOL,
        config={
            "scsi0": "local-lvm:vm-4242-disk-0,size=4G",
            "cores": 2,
            "memory": 1024,
            "tags": "hub-machine",
        },
    )
    return pve


@pytest.fixture
def menv(cluster: Any, fakepve_cafile: str, tmp_path: Path, database_url: str) -> HubEnv:
    return machine_env(cluster, fakepve_cafile, tmp_path, database_url)


@pytest.fixture
def sqlite_menv(cluster: Any, fakepve_cafile: str, tmp_path: Path, sqlite_url: str) -> HubEnv:
    return machine_env(cluster, fakepve_cafile, tmp_path, sqlite_url)


@pytest.fixture
def machine_service(
    cluster: Any, fakepve_cafile: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> Iterator[Service]:
    """The real ``hubctl serve`` for machines, on PostgreSQL and Redis."""
    yield from serve(machine_env(cluster, fakepve_cafile, tmp_path, postgres_url, HUB_REDIS_URL=redis_url))
