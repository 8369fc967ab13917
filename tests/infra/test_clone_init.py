"""CloneCloudInit's provider logic against a recording fake API, and its HTTP client on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import pytest

from hubinfra.clone_init import (
    CloneCloudInitProvider,
    CloneInitError,
    HttpPveApi,
    configure_clone,
    smbios_with_uuid,
)

UUID = "2babd623-f266-5d58-b4b3-b8018972154c"
BASE = "/nodes/pve/qemu/1150"
INHERITED = {
    "ide2": "local-lvm:vm-1150-cloudinit,media=cdrom",
    "cicustom": "user=local:snippets/hub-prod-user-data.yaml",
    "ipconfig0": "ip=10.20.0.10/24,gw=10.20.0.1",
    "smbios1": "uuid=0b0b0b0b-0000-0000-0000-000000000000,serial=aHVi,base64=1",
    "scsi0": "ceph-vm:vm-1150-disk-0,size=200G",
}


class FakeApi:
    def __init__(
        self, *, status: str = "stopped", config: Mapping[str, str] = INHERITED, fail: str = ""
    ) -> None:
        self.status = status
        self.config = dict(config)
        self.fail = fail
        self.calls: list[tuple[str, str, dict[str, str]]] = []

    def get(self, path: str) -> Any:
        self.calls.append(("GET", path, {}))
        if path.endswith("/status/current"):
            return {"status": self.status}
        if path.endswith("/config"):
            return dict(self.config)
        if "/tasks/" in path:
            return {"status": "stopped", "exitstatus": self.fail or "OK"}
        raise AssertionError(path)

    def post(self, path: str, data: Mapping[str, str]) -> Any:
        self.calls.append(("POST", path, dict(data)))
        return "UPID:pve:0000:0000:0000:qmconfig:1150:root@pam:"

    def posts(self) -> list[tuple[str, dict[str, str]]]:
        return [(path, data) for method, path, data in self.calls if method == "POST"]


def _configure(api: FakeApi, *, start: bool = True, restart: bool = False) -> dict[str, str]:
    return configure_clone(
        api,
        node="pve",
        vmid=1150,
        datastore="local-lvm",
        cicustom="user=local:snippets/exp-user-data.yaml,meta=local:snippets/exp-meta-data.yaml",
        ipconfig0="ip=10.210.50.10/24,gw=10.210.50.1",
        vm_uuid=UUID,
        start=start,
        restart=restart,
        sleep=lambda _: None,
    )


def test_stopped_clone_gets_its_own_cicustom_identity_and_address_before_it_starts() -> None:
    api = FakeApi()
    _configure(api)
    posts = api.posts()
    assert [p for p, _ in posts] == [f"{BASE}/config", f"{BASE}/status/start"]
    config = posts[0][1]
    assert (
        config["cicustom"] == "user=local:snippets/exp-user-data.yaml,meta=local:snippets/exp-meta-data.yaml"
    )
    assert config["ipconfig0"] == "ip=10.210.50.10/24,gw=10.210.50.1"
    # The source's uuid is replaced; the other SMBIOS fields survive.
    assert config["smbios1"] == f"uuid={UUID},serial=aHVi,base64=1"
    # The inherited cloud-init drive is reused (Proxmox regenerates it at start), not duplicated.
    assert "ide2" not in config
    # Every task was waited for.
    assert sum(1 for m, p, _ in api.calls if m == "GET" and "/tasks/" in p) == 2


def test_no_start_when_not_asked() -> None:
    api = FakeApi()
    _configure(api, start=False)
    assert [p for p, _ in api.posts()] == [f"{BASE}/config"]


def test_a_clone_without_cloud_init_drive_gets_one_on_ide2() -> None:
    api = FakeApi(config={k: v for k, v in INHERITED.items() if k != "ide2"})
    changes = _configure(api)
    assert changes["ide2"] == "local-lvm:cloudinit,media=cdrom"


def test_ide2_taken_by_something_else_is_refused() -> None:
    api = FakeApi(config={"ide2": "local:iso/debian.iso,media=cdrom"})
    with pytest.raises(CloneInitError, match="ide2 is taken"):
        _configure(api)
    assert api.posts() == []


def test_clone_running_at_create_is_stopped_before_anything_else() -> None:
    api = FakeApi(status="running")
    _configure(api)
    assert [p for p, _ in api.posts()] == [f"{BASE}/status/stop", f"{BASE}/config", f"{BASE}/status/start"]


def test_update_of_a_running_clone_reboots_it_so_cloud_init_applies() -> None:
    api = FakeApi(status="running")
    _configure(api, restart=True)
    assert [p for p, _ in api.posts()] == [f"{BASE}/config", f"{BASE}/status/reboot"]


def test_failed_task_is_an_error_naming_the_exit_status() -> None:
    with pytest.raises(CloneInitError, match="storage full"):
        _configure(FakeApi(fail="storage full"))


def test_smbios_with_uuid_on_empty_config() -> None:
    assert smbios_with_uuid(None, UUID) == f"uuid={UUID}"


def test_diff_replaces_for_another_vm_and_updates_for_new_settings() -> None:
    provider = CloneCloudInitProvider()
    old = {"node": "pve", "vmid": 1150, "clone_of": "100@hub-a", "cicustom": "user=a", "start": True}
    assert provider.diff("pve/1150", old, dict(old)).changes is False
    new_settings = provider.diff("pve/1150", old, {**old, "cicustom": "user=b"})
    assert new_settings.changes is True and not new_settings.replaces
    other_clone = provider.diff("pve/1150", old, {**old, "clone_of": "100@hub-b"})
    assert other_clone.replaces == ["clone_of"]


def test_provider_without_any_token_fails_clearly(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PROXMOX_VE_API_TOKEN", raising=False)
    with pytest.raises(CloneInitError, match="hub:proxmoxApiToken"):
        CloneCloudInitProvider().create({"endpoint": "https://pve:8006", "api_token": None})


class _Handler(BaseHTTPRequestHandler):
    seen: ClassVar[list[tuple[str, str, str, str]]] = []

    def _reply(self, body: bytes) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        sent = self.rfile.read(length).decode() if length else ""
        _Handler.seen.append((self.command, self.path, self.headers.get("Authorization", ""), sent))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        self._reply(json.dumps({"data": {"status": "stopped"}}).encode())

    def do_POST(self) -> None:
        self._reply(json.dumps({"data": "UPID:pve:1"}).encode())

    def log_message(self, format: str, *args: Any) -> None:
        return None


@pytest.fixture
def loopback() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_http_client_sends_the_token_header_and_form_body(loopback: str) -> None:
    api = HttpPveApi(loopback, "root@pam!pulumi=secret", insecure=False)
    assert api.get(f"{BASE}/status/current") == {"status": "stopped"}
    assert api.post(f"{BASE}/config", {"cicustom": "user=local:snippets/x.yaml"}) == "UPID:pve:1"
    get, post = _Handler.seen
    assert get[:3] == ("GET", f"/api2/json{BASE}/status/current", "PVEAPIToken=root@pam!pulumi=secret")
    assert post[0:2] == ("POST", f"/api2/json{BASE}/config")
    assert post[3] == "cicustom=user%3Dlocal%3Asnippets%2Fx.yaml"
