"""deploy/nginx/hub.conf under the real nginx, in front of the real API, on loopback.

Every client below uses its own 127/8 source address: nginx keys its limits on the client address, so
one test's burst never eats another test's allowance, and the per-client keying itself is tested.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from tests.deploy.edge import Edge, Response, Upstream, start_edge
from tests.deploy.nginx_harness import (
    HUB_CONF,
    PRODUCTION_DIRECTIVES,
    HarnessError,
    LoopbackNginx,
    LoopbackValues,
    free_port,
    make_self_signed,
    render_loopback,
)

SECURITY_HEADERS = {
    "strict-transport-security": "max-age=31536000",
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "content-security-policy": "frame-ancestors 'none'",
    "referrer-policy": "no-referrer",
}
# From hub.conf: reads 10 r/s burst 20, writes 2 r/s burst 10, bodies up to 1 MiB.
READ_RATE, READ_BURST = 10, 20
WRITE_RATE, WRITE_BURST = 2, 10
BODY_LIMIT = 1024 * 1024


def assert_security_headers(response: Response) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert response.headers.get(name) == value, f"{name}: {response.headers.get(name)!r}"
    assert response.headers.get("server") == "nginx", "server_tokens off: no version in Server"


def loopback_values(tmp_path: Path, *, upstream_port: int = 8080) -> LoopbackValues:
    cert, key = make_self_signed(tmp_path / "tls")
    return LoopbackValues(
        http_port=free_port(), https_port=free_port(), upstream_port=upstream_port, cert=cert, key=key
    )


# --- the config itself ------------------------------------------------------------------------------


def test_nginx_t_accepts_the_shipped_config(nginx_binary: Path, tmp_path: Path) -> None:
    nginx = LoopbackNginx(prefix=tmp_path / "nginx", values=loopback_values(tmp_path))
    nginx.prefix.mkdir()
    nginx.write()
    result = nginx.test_config()
    assert result.returncode == 0, result.stderr
    assert "syntax is ok" in result.stderr
    assert "test is successful" in result.stderr
    # Warnings would be a config that works by accident (e.g. a duplicate or an ignored directive).
    assert "[warn]" not in result.stderr, result.stderr


def test_nginx_t_rejects_a_broken_config(nginx_binary: Path, tmp_path: Path) -> None:
    """The check above has teeth: the same harness reports a config nginx cannot load."""
    broken = tmp_path / "hub.conf"
    broken.write_text(HUB_CONF.read_text().replace("zone=hub_per_client:10m", "zone=hub_other:10m"))
    nginx = LoopbackNginx(prefix=tmp_path / "nginx", values=loopback_values(tmp_path))
    nginx.prefix.mkdir()
    nginx.write(source=broken)
    result = nginx.test_config()
    assert result.returncode != 0
    assert "hub_per_client" in result.stderr


def test_loopback_rendering_changes_only_the_tagged_directives(tmp_path: Path) -> None:
    source = HUB_CONF.read_text()
    rendered = render_loopback(source, loopback_values(tmp_path))
    changed = [(a, b) for a, b in zip(source.splitlines(), rendered.splitlines(), strict=True) if a != b]
    assert len(changed) == len(PRODUCTION_DIRECTIVES)
    assert all("# loopback:" in original for original, _ in changed)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("server 127.0.0.1:8080;", "server 127.0.0.1:9090;"),  # production value drifted
        ("  # loopback: key", ""),  # a tag lost
    ],
)
def test_loopback_rendering_refuses_a_config_it_does_not_recognise(
    tmp_path: Path, old: str, new: str
) -> None:
    source = HUB_CONF.read_text()
    assert source.count(old) == 1
    with pytest.raises(HarnessError):
        render_loopback(source.replace(old, new), loopback_values(tmp_path))


# --- nginx in front of the API ----------------------------------------------------------------------


def test_healthz_over_tls_without_auth_has_the_security_headers(edge: Edge) -> None:
    response = edge.call("GET", "/healthz", source="127.0.0.11")
    assert response.status == 200, response.body
    assert_security_headers(response)
    assert "retry-after" not in response.headers


def test_plain_http_serves_healthz_and_redirects_everything_else(edge: Edge) -> None:
    health = edge.call("GET", "/healthz", source="127.0.0.12", tls=False)
    assert health.status == 200
    moved = edge.call("GET", "/api/v1/checkpoints?limit=1", source="127.0.0.12", tls=False)
    assert moved.status == 308
    assert moved.headers["location"] == "https://127.0.0.1/api/v1/checkpoints?limit=1"


def test_api_calls_pass_the_bearer_token_through(edge: Edge) -> None:
    refused = edge.call("GET", "/api/v1/checkpoints", source="127.0.0.13")
    assert refused.status == 401
    assert_security_headers(refused)
    listed = edge.call(
        "GET",
        "/api/v1/checkpoints",
        source="127.0.0.13",
        headers={"Authorization": f"Bearer {edge.upstream.token}"},
    )
    assert listed.status == 200, listed.body
    page = json.loads(listed.body)
    assert page["total"] == len(page["items"]) == 0
    assert_security_headers(listed)


def test_body_over_the_limit_is_413_and_small_bodies_reach_the_api(edge: Edge) -> None:
    headers = {"Content-Type": "application/json"}
    too_big = edge.call(
        "POST", "/api/v1/checkpoints", source="127.0.0.14", body=b" " * (BODY_LIMIT + 1), headers=headers
    )
    assert too_big.status == 413
    assert json.loads(too_big.body) == {"detail": "request body too large"}
    assert_security_headers(too_big)
    # A small body goes through to the API, which refuses it for want of a token (not nginx: 401).
    small = edge.call("POST", "/api/v1/checkpoints", source="127.0.0.14", body=b"{}", headers=headers)
    assert small.status == 401


def burst(edge: Edge, *, method: str, path: str, count: int, source: str) -> tuple[list[Response], float]:
    """``count`` requests back to back on one keep-alive connection; the responses and the elapsed s."""
    conn = edge.connect(source=source)
    body = b"{}" if method == "POST" else None
    headers = {"Content-Type": "application/json"} if body else {}
    started = time.monotonic()
    try:
        responses = [edge.call(method, path, body=body, headers=headers, conn=conn) for _ in range(count)]
    finally:
        conn.close()
    return responses, time.monotonic() - started


def test_a_burst_over_the_rate_limit_gets_429_for_that_client_only(edge: Edge) -> None:
    responses, elapsed = burst(edge, method="GET", path="/healthz", count=40, source="127.0.0.15")
    statuses = [r.status for r in responses]
    assert set(statuses) <= {200, 429}, statuses
    served = statuses.count(200)
    # The burst is served at once; beyond it only what the rate refilled while we were sending.
    assert READ_BURST + 1 <= served <= READ_BURST + 1 + math.ceil(elapsed * READ_RATE), (served, elapsed)
    assert statuses.count(429) >= 40 - served > 0
    # Once refused, a client stays refused for the rest of a fast burst.
    assert statuses[served:] == [429] * (40 - served), statuses
    limited = responses[-1]
    assert json.loads(limited.body) == {"detail": "rate limit exceeded, retry later"}
    assert limited.headers.get("retry-after") == "1"
    assert_security_headers(limited)
    # Another client is not affected by the first one's burst.
    assert edge.call("GET", "/healthz", source="127.0.0.16").status == 200


def test_writes_have_a_tighter_limit_than_reads(edge: Edge) -> None:
    responses, elapsed = burst(edge, method="POST", path="/api/v1/checkpoints", count=20, source="127.0.0.17")
    statuses = [r.status for r in responses]
    passed = [s for s in statuses if s != 429]
    # Unauthenticated, so the API answers 401 to those nginx lets through.
    assert set(passed) == {401}, statuses
    assert WRITE_BURST + 1 <= len(passed) <= WRITE_BURST + 1 + math.ceil(elapsed * WRITE_RATE), statuses
    # Reads from the same client still have their own, larger allowance.
    assert edge.call("GET", "/healthz", source="127.0.0.17").status == 200


def test_api_down_is_a_json_502_not_an_html_page(nginx_binary: Path, tmp_path: Path) -> None:
    nginx, cert = start_edge(tmp_path, upstream_port=free_port())  # nothing listens there
    try:
        edge = Edge(nginx=nginx, cert=cert, upstream=Upstream(port=0, token="", database_url=""))
        response = edge.call("GET", "/healthz", source="127.0.0.18")
        assert response.status == 502
        assert response.headers["content-type"] == "application/json"
        assert json.loads(response.body) == {"detail": "the Hub API is not reachable right now"}
        assert_security_headers(response)
    finally:
        nginx.stop()
