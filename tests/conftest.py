"""Shared fixtures: a schema-validating Proxmox API (fakepve) on loopback over verified TLS, real
PostgreSQL and Redis servers (started by the test command), and a way to run the real ``hubctl``.

fakepve is AGPL: it is used here as a fixture only (its pytest plugin serves it from a thread on
127.0.0.1 with a certificate our client verifies), never imported by ``runtime``.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hubenv import HUB_VMID, NODE, TOKEN_ID, TOKEN_SECRET, HubEnv, make_env, need


@pytest.fixture
def pve(fakepve: Any) -> Any:
    """The fake cluster with the Hub VM (100, running, disk on thin LVM so it can snapshot) and our token."""
    fakepve.apitokens[TOKEN_ID] = TOKEN_SECRET
    fakepve.add_vm(
        HUB_VMID,
        "hub",
        node=NODE,
        status="running",
        config={"scsi0": "local-lvm:vm-100-disk-0,size=50G", "cores": 4, "memory": 8192, "agent": "1"},
    )
    return fakepve


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hub.db'}"


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh, empty database on the real PostgreSQL server, dropped afterwards."""
    import psycopg

    base = need("HUB_TEST_POSTGRES_URL")
    name = "hub_test_" + secrets.token_hex(6)
    admin = base.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database on the real server, flushed before and after.

    Each pytest process takes its own database number (1-15, by pid), so that two test runs on one
    server (a developer's and a helper's) do not flush each other's queued jobs."""
    import redis

    base = need("HUB_TEST_REDIS_URL")
    url = base.rsplit("/", 1)[0] + f"/{os.getpid() % 15 + 1}"
    client = redis.Redis.from_url(url)
    client.flushdb()
    yield url
    client.flushdb()


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'hub.db'}"
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def hubenv(pve: Any, fakepve_cafile: str, tmp_path: Path, database_url: str) -> HubEnv:
    """A Hub on SQLite and on PostgreSQL (parametrised), talking to the fake cluster."""
    env = make_env(pve, fakepve_cafile, tmp_path, database_url)
    env.services().db.upgrade()
    return env


@pytest.fixture
def sqlite_hubenv(pve: Any, fakepve_cafile: str, tmp_path: Path, sqlite_url: str) -> HubEnv:
    env = make_env(pve, fakepve_cafile, tmp_path, sqlite_url)
    env.services().db.upgrade()
    return env
