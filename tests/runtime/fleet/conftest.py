"""Fixtures for the fleet tests: the three-node cluster (cluster.py) and a Hub whose pool is its pool."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.runtime.fleet import cluster
from tests.support.hubenv import HubEnv, make_env


@pytest.fixture
def fleet(pve: Any) -> Any:
    cluster.build(pve)
    return pve


@pytest.fixture
def fleet_env(fleet: Any, fakepve_cafile: str, tmp_path: Path, sqlite_url: str) -> HubEnv:
    env = make_env(fleet, fakepve_cafile, tmp_path, sqlite_url, HUB_POOL=cluster.POOL)
    env.services().db.upgrade()
    return env
