"""The journal mirrored on the Hub VM and imported by the Hub after its rollback; the CLI's shapes and
exit codes; alerts that hang; the sentinel's token refused beyond its list."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hubcore.proxmox import ProxmoxClient
from hubcore.proxmox.errors import ProxmoxPermissionError, ProxmoxTaskFailed
from hubcore.proxmox.vms import VmRef
from runtime.sentinel import mirror
from runtime.sentinel.alerts import Alerter, apprise_delivery
from runtime.sentinel.hub_import import import_recovery_journal
from runtime.sentinel.hubvm import SENTINEL_PRIVILEGES
from runtime.sentinel.records import Event
from tests.support.hubenv import HUB_VMID, NODE, HubEnv, make_env, one_line_error
from tests.support.sentinel import FakeClock, FakeHub, add_checkpoint, changes, make_sentinel, serve_hub


def _two(pve: Any) -> tuple[str, str]:
    now = datetime.now(UTC)
    return (
        add_checkpoint(pve, now - timedelta(hours=2), blessed=True),
        add_checkpoint(pve, now - timedelta(hours=6), blessed=True),
    )


def test_the_restored_hub_imports_the_journal_and_lists_what_happened_after_its_checkpoint(
    pve: Any, fakepve_cafile: str, tmp_path: Path, hubenv: HubEnv
) -> None:
    pve.vm(HUB_VMID).config["description"] = "Hub VM (operator's note)"
    a, b = _two(pve)
    hub = FakeHub(pve, good={b})
    clock = FakeClock(datetime.now(UTC))
    with serve_hub(hub) as url:
        sentinel = make_sentinel(pve, fakepve_cafile, tmp_path / "sentinel.db", url, clock)
        hub.arm()
        assert sentinel.recover().result == "healthy"
    # The Hub's database came back from checkpoint b: it knew nothing of this; the description kept
    # the journal through the rollbacks (and the operator's note).
    description = pve.vm(HUB_VMID).config["description"]
    assert description.startswith("Hub VM (operator's note)")
    assert len(description.encode()) <= mirror.PVE_DESCRIPTION_MAX
    first = hubenv.run("recovery", "list", "--json")
    assert first.returncode == 0, first.stderr
    before = json.loads(first.stdout)
    assert before == {"events": []}

    from runtime.serve import _reconcile_once  # pyright: ignore[reportPrivateUsage]

    _reconcile_once(hubenv.services())  # the hook the service runs at start and on its loop
    listed = hubenv.run("recovery", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    events = json.loads(listed.stdout)["events"]
    assert all(set(e) == {"at", "kind", "checkpoint", "outcome", "detail"} for e in events)
    kinds = [(e["kind"], e["outcome"]) for e in events]
    assert kinds[0] == ("run-started", "started")
    assert ("rollback", "unhealthy") in kinds and ("quarantine", "quarantined") in kinds
    assert kinds[-1] == ("recovered", "healthy")
    assert len(events) == len(sentinel.store.events(HUB_VMID))
    # Idempotent: a second import adds nothing.
    assert import_recovery_journal(hubenv.services()) == 0
    del a


def test_the_mirrored_journal_stays_within_pves_limit_and_keeps_other_text() -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    events = [
        Event(f"id-{i:04d}", start + timedelta(minutes=i), "rollback", "c" * 36, "unhealthy", "x" * 400)
        for i in range(500)
    ]
    text = mirror.with_events(mirror.parse("operator text\nline two"), events).render()
    assert len(text.encode()) <= mirror.PVE_DESCRIPTION_MAX
    parsed = mirror.parse(text)
    assert parsed.other == ["operator text", "line two"]
    assert parsed.journal[-1].id == "id-0499"  # the newest kept, the oldest dropped
    assert 0 < len(parsed.journal) < 500


def _cli_env(pve: Any, cafile: str, tmp_path: Path) -> HubEnv:
    return make_env(
        pve,
        cafile,
        tmp_path,
        f"sqlite:///{tmp_path / 'sentinel.db'}",
        HUB_SENTINEL_PROBE_INTERVAL_SECONDS="0.05",
        HUB_SENTINEL_GATE_TIMEOUT_SECONDS="0.3",
    )


def test_cli_dry_run_changes_nothing_and_names_the_checkpoints(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    a, b = _two(pve)
    env = _cli_env(pve, fakepve_cafile, tmp_path)
    with serve_hub(FakeHub(pve)) as url:
        start = len(pve.requests)
        result = env.run("sentinel", "recover", "--hub-url", url, "--dry-run", "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["result"] == "dry-run"
    assert [s["action"] for s in doc["ladder"]] == ["emergency", "restart", "rollback", "rollback", "give-up"]
    assert [s["snapname"] for s in doc["ladder"] if s["action"] == "rollback"] == [a, b]
    assert changes(pve, start) == []


def test_cli_error_exit_codes_status_and_reset(pve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    _two(pve)
    env = _cli_env(pve, fakepve_cafile, tmp_path)
    bad = env.run("sentinel", "recover", "--hub-url", "hub.example")
    assert bad.returncode == 2 and "--hub-url" in one_line_error(bad.stderr)
    missing = env.run("sentinel", "recover")
    assert missing.returncode == 2 and "HUB_SENTINEL_HUB_URL" in one_line_error(missing.stderr)
    with serve_hub(FakeHub(pve)) as url:
        unknown = env.run("sentinel", "rollback", "--to", "hub-nope", "--yes", HUB_SENTINEL_HUB_URL=url)
        assert unknown.returncode == 2 and "hub-nope" in one_line_error(unknown.stderr)

        exhausted = env.run("sentinel", "recover", "--hub-url", url, "--json")
        assert exhausted.returncode == 1, exhausted.stderr
        assert json.loads(exhausted.stdout)["result"] == "error"
        status = json.loads(env.run("sentinel", "status", "--json").stdout)
        assert status["state"] == "error" and status["lease"] is not None
        start = len(pve.requests)
        again = env.run("sentinel", "recover", "--hub-url", url, "--json")
        assert again.returncode == 1 and changes(pve, start) == []

        reset = env.run("sentinel", "reset", "--json")
        assert reset.returncode == 0, reset.stderr
        assert json.loads(reset.stdout) == {"state": "watching"}
        status = json.loads(env.run("sentinel", "status", "--json").stdout)
        assert status["lease"] is None
        assert status["events"][-1]["kind"] == "reset"


def test_cli_manual_rollback_takes_the_same_path(pve: Any, fakepve_cafile: str, tmp_path: Path) -> None:
    _a, b = _two(pve)
    env = _cli_env(pve, fakepve_cafile, tmp_path)
    hub = FakeHub(pve, good={b}, initial="healthy")
    with serve_hub(hub) as url:
        start = len(pve.requests)
        result = env.run("sentinel", "rollback", "--to", b, "--yes", "--hub-url", url, "--json")
    assert result.returncode == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["result"] == "healthy"
    assert [s["action"] for s in doc["ladder"]] == ["emergency", "rollback"]
    paths = [p for _m, p in changes(pve, start)]
    snap_at = next(i for i, p in enumerate(paths) if p.endswith(f"/qemu/{HUB_VMID}/snapshot"))
    rollback_at = next(i for i, p in enumerate(paths) if p.endswith(f"/snapshot/{b}/rollback"))
    assert snap_at < rollback_at


class _Hanging(BaseHTTPRequestHandler):
    got = threading.Event()
    release = threading.Event()

    def do_POST(self) -> None:
        type(self).got.set()
        type(self).release.wait(60)
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_an_alert_endpoint_that_hangs_does_not_delay_recovery(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    _two(pve)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        alerter = Alerter(apprise_delivery(f"json://127.0.0.1:{server.server_address[1]}/"), attempts=1)
        with serve_hub(FakeHub(pve)) as url:
            sentinel = make_sentinel(
                pve, fakepve_cafile, tmp_path / "s.db", url, FakeClock(), alerter=alerter
            )
            outcome = sentinel.recover()
            assert outcome.result == "error"
            # The alert is out (the endpoint holds it) while recovery has already ended.
            assert _Hanging.got.wait(30)
            assert not _Hanging.release.is_set()
            alerter.close(wait_seconds=0.2)  # bounded: the hung delivery cannot hold the exit
    finally:
        _Hanging.release.set()
        server.shutdown()
        server.server_close()


SENTINEL_TOKEN = ("sentinel@pve!watch", "0c0ffee0-0000-4000-8000-000000000001")


def test_the_sentinels_token_suffices_and_is_refused_beyond_its_list(
    pve: Any, fakepve_cafile: str, tmp_path: Path
) -> None:
    a, _b = _two(pve)
    pve.add_vm(101, "other", node=NODE, status="running", config={"scsi0": "local-lvm:vm-101-disk-0,size=8G"})
    pve.apitokens[SENTINEL_TOKEN[0]] = SENTINEL_TOKEN[1]
    pve.grant(SENTINEL_TOKEN[0], f"/vms/{HUB_VMID}", *SENTINEL_PRIVILEGES)
    hub = FakeHub(pve, good={a})
    with serve_hub(hub) as url:
        sentinel = make_sentinel(
            pve, fakepve_cafile, tmp_path / "s.db", url, FakeClock(), token=SENTINEL_TOKEN
        )
        hub.arm()
        assert sentinel.recover().result == "healthy"
    user, _, name = SENTINEL_TOKEN[0].partition("!")
    client = ProxmoxClient(
        base_url=pve.url,
        token_user=user,
        token_name=name,
        token_secret=SENTINEL_TOKEN[1],
        verify=fakepve_cafile,
    )
    hub_vm, other = VmRef(HUB_VMID, NODE), VmRef(101, NODE)
    refused = [
        lambda: client.update_vm_config(hub_vm, memory=1024, timeout=10),
        lambda: client.clone(hub_vm, newid=150, timeout=10),
        lambda: client.stop(other, timeout=10),
        lambda: client.take_snapshot(NODE, 101, name="x1", description="", timeout=10),
        lambda: client.destroy(hub_vm, timeout=10),
    ]
    for call in refused:
        # Refused up front (403), or inside the task for config keys PVE checks in the worker.
        with pytest.raises((ProxmoxPermissionError, ProxmoxTaskFailed), match="Permission check failed"):
            call()
