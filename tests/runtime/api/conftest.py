"""Fixtures for the API tests: the real ``hubctl serve`` process over fakepve and a real database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.hubenv import make_env
from tests.support.service import Service, serve


@pytest.fixture(params=["postgres+redis", "sqlite+in-process"])
def service(
    request: pytest.FixtureRequest, pve: Any, fakepve_cafile: str, tmp_path: Path
) -> Iterator[Service]:
    """The service on each backend combination (for behaviour that depends on them)."""
    if request.param == "postgres+redis":
        env = make_env(
            pve,
            fakepve_cafile,
            tmp_path,
            request.getfixturevalue("postgres_url"),
            HUB_REDIS_URL=request.getfixturevalue("redis_url"),
        )
    else:
        env = make_env(pve, fakepve_cafile, tmp_path, f"sqlite:///{tmp_path / 'hub.db'}")
    yield from serve(env)


@pytest.fixture
def pg_service(
    pve: Any, fakepve_cafile: str, tmp_path: Path, postgres_url: str, redis_url: str
) -> Iterator[Service]:
    """The service on its production backends only (for the HTTP edge, which does not depend on them)."""
    yield from serve(make_env(pve, fakepve_cafile, tmp_path, postgres_url, HUB_REDIS_URL=redis_url))
