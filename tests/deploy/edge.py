"""The nginx edge under test and the upstream behind it: helpers the deploy tests import (fixtures
are in tests/deploy/conftest.py)."""

from __future__ import annotations

import http.client
import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.nginx_harness import (
    NGINX,
    LoopbackNginx,
    LoopbackValues,
    client_context,
    free_port,
    make_self_signed,
    nginx_available,
)


def require_nginx() -> None:
    """Skipped on a developer machine without nginx; under CI a missing nginx is a failure."""
    if nginx_available():
        return
    if os.environ.get("CI"):
        pytest.fail(f"{NGINX} is missing: `scripts/setup.sh --system` installs nginx-light")
    pytest.skip(f"{NGINX} is missing (install nginx-light, or run `scripts/setup.sh --system`)")


@dataclass(frozen=True)
class Upstream:
    port: int
    token: str
    database_url: str


@dataclass(frozen=True)
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Edge:
    """nginx running the shipped hub.conf, and how to talk to it like a client would."""

    nginx: LoopbackNginx
    cert: Path
    upstream: Upstream

    @property
    def https_port(self) -> int:
        return self.nginx.values.https_port

    @property
    def http_port(self) -> int:
        return self.nginx.values.http_port

    def connect(self, *, source: str = "127.0.0.1", tls: bool = True) -> http.client.HTTPConnection:
        """A client connection from ``source`` (any 127/8 address: each is a distinct client to nginx)."""
        if tls:
            context: ssl.SSLContext = client_context(self.cert)
            return http.client.HTTPSConnection(
                "127.0.0.1", self.https_port, context=context, timeout=15, source_address=(source, 0)
            )
        return http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=15, source_address=(source, 0))

    def call(
        self,
        method: str,
        path: str,
        *,
        source: str = "127.0.0.1",
        tls: bool = True,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        conn: http.client.HTTPConnection | None = None,
    ) -> Response:
        own = conn is None
        connection = conn or self.connect(source=source, tls=tls)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            reply = connection.getresponse()
            data = reply.read()
            return Response(reply.status, {k.lower(): v for k, v in reply.getheaders()}, data)
        finally:
            if own:
                connection.close()


def start_edge(root: Path, *, upstream_port: int) -> tuple[LoopbackNginx, Path]:
    cert, key = make_self_signed(root / "tls")
    values = LoopbackValues(
        http_port=free_port(), https_port=free_port(), upstream_port=upstream_port, cert=cert, key=key
    )
    nginx = LoopbackNginx(prefix=root / "nginx", values=values)
    nginx.prefix.mkdir(parents=True)
    nginx.write()
    nginx.start()
    return nginx, cert
