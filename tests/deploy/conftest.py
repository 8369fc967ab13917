"""Fixtures for the deployment tests: real nginx (Debian's) in front of the real API, on loopback."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.deploy.edge import Edge, Upstream, require_nginx, start_edge
from tests.deploy.nginx_harness import (
    NGINX,
)
from tests.deploy.upstream import HubServer, create_token


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    """The real ``hubctl serve`` on the embedded default (SQLite, no Redis), with a token."""
    root = tmp_path_factory.mktemp("api")
    database_url = f"sqlite:///{root / 'hub.db'}"
    server = HubServer(database_url=database_url, log=root / "serve.log")
    server.start()
    try:
        token = create_token(database_url=database_url, name="deploy-tests")
        yield Upstream(port=server.port, token=token, database_url=database_url)
    finally:
        server.stop()


@pytest.fixture(scope="module")
def nginx_binary() -> Path:
    require_nginx()
    return NGINX


@pytest.fixture(scope="module")
def edge(nginx_binary: Path, tmp_path_factory: pytest.TempPathFactory, upstream: Upstream) -> Iterator[Edge]:
    nginx, cert = start_edge(tmp_path_factory.mktemp("edge"), upstream_port=upstream.port)
    try:
        yield Edge(nginx=nginx, cert=cert, upstream=upstream)
    finally:
        nginx.stop()
