"""Hostile input over HTTP, through the real ``hubctl serve``: nothing a client sends produces a 5xx,
every refusal has the one error shape, and nothing refused reaches the job queue (issue 8, "API")."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support.service import Service

SHAPE = {"error", "detail"}


def raw(
    service: Service, method: str, path: str, data: bytes | Iterator[bytes], **headers: str
) -> requests.Response:
    return requests.request(
        method,
        service.url + path,
        data=data,
        headers={**service.headers(), "Content-Type": "application/json", **headers},
        timeout=30,
    )


def refused(response: requests.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == SHAPE and isinstance(body["detail"], str), body
    return body


def no_jobs(service: Service) -> None:
    assert service.get("/api/v1/jobs").json()["total"] == 0


def test_a_lone_surrogate_is_refused_cleanly(pg_service: Service) -> None:
    svc = pg_service
    for doc in (b'{"reason": "\\ud800"}', b'{"\\udfff": 1}', b'{"kind": "\\udc80manual"}'):
        body = refused(raw(svc, "POST", "/api/v1/checkpoints", doc), 422)
        assert body["error"] == "invalid"
    refused(raw(svc, "POST", "/api/v1/checkpoints/prune", b'{"dry_run": "\\ud800"}'), 422)
    # Bytes that are not UTF-8 at all, in the body and in a query string.
    refused(raw(svc, "POST", "/api/v1/checkpoints", b'{"reason": "\xed\xa0\x80"}'), 422)
    assert svc.get("/api/v1/audit?target=%ED%A0%80").status_code == 200
    no_jobs(svc)
    _, err = svc.stop()
    assert "Traceback" not in err and "Internal Server Error" not in err, err[-3000:]


def test_a_chunked_body_over_the_limit_is_413(pg_service: Service) -> None:
    def chunks(total: int) -> Iterator[bytes]:
        yield b'{"reason": "'
        for _ in range(total // 1024):
            yield b"x" * 1024
        yield b'"}'

    body = refused(raw(pg_service, "POST", "/api/v1/checkpoints", chunks(80 * 1024)), 413)
    assert body["error"] == "too_large"
    no_jobs(pg_service)
    # A small chunked body is read as usual (the limit is on size, not on the encoding).
    small = raw(pg_service, "POST", "/api/v1/checkpoints/prune", iter([b'{"dry_run": ', b"true}"]))
    assert small.status_code == 202, small.text
    refused(raw(pg_service, "POST", "/api/v1/checkpoints", b"x" * (65 * 1024)), 413)


def test_vm_id_is_a_json_integer_and_nothing_else(pg_service: Service) -> None:
    svc = pg_service
    for field in ("vmid", "vm_id"):
        for value in (
            "1e3",
            "1000.0",
            "100.5",
            "true",
            '"1000"',
            "[100]",
            "1e400",
            "-100",
            "99999999999999999999",
        ):
            doc = f'{{"{field}": {value}}}'.encode()
            body = refused(raw(svc, "POST", "/api/v1/checkpoints", doc), 422)
            assert body["error"] == "invalid", (doc, body)
    for value in ("1e3", "100.0", "1_000", " 100", "abc", "99999999999999999999"):
        refused(svc.get("/api/v1/checkpoints", params={"vm_id": value}), 422)
        refused(svc.get("/api/v1/checkpoints", params={"vmid": value}), 422)
    no_jobs(svc)


def test_every_error_has_one_shape(pg_service: Service) -> None:
    svc = pg_service
    assert refused(svc.get("/api/v1/nowhere"), 404)["error"] == "not_found"
    assert refused(svc.delete("/api/v1/jobs"), 405)["error"] == "method_not_allowed"
    assert refused(raw(svc, "POST", "/api/v1/checkpoints", b"{not json"), 422)["error"] == "invalid"
    assert refused(raw(svc, "POST", "/api/v1/checkpoints", b"[]"), 422)["error"] == "invalid"
    assert refused(svc.get("/api/v1/checkpoints", params={"limit": 0}), 422)["error"] == "invalid"
    invalid = refused(svc.post("/api/v1/checkpoints", {"kind": "whenever"}), 422)
    assert "kind" in invalid["detail"]
    assert refused(requests.get(svc.url + "/api/v1/jobs", timeout=5), 401)["error"] == "unauthorized"


@st.composite
def hostile_documents(draw: st.DrawFn) -> bytes:
    """JSON objects over the API's field names and random ones, with any code point, lone surrogates
    included (as JSON escapes, the only way a surrogate can travel in UTF-8 JSON)."""
    text = st.text(st.characters(codec=None, categories=None), max_size=20)
    keys = st.sampled_from(["kind", "reason", "vmid", "vm_id", "dry_run", "uuid"]) | text
    leaf = st.none() | st.booleans() | st.integers() | st.floats() | text
    values = st.recursive(
        leaf,
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
        max_leaves=6,
    )
    doc = draw(st.dictionaries(keys, values, max_size=4))
    return json.dumps(doc, ensure_ascii=True).encode()


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=hostile_documents(), path=st.sampled_from(["/api/v1/checkpoints", "/api/v1/checkpoints/prune"]))
def test_no_document_produces_a_server_error(pg_service: Service, doc: bytes, path: str) -> None:
    response = raw(pg_service, "POST", path, doc)
    assert response.status_code < 500, (doc, response.status_code, response.text)
    if response.status_code >= 400:
        assert set(response.json()) == SHAPE, response.text
