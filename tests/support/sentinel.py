"""The sentinel under test: a Hub health endpoint the test controls, a fake clock, Hub checkpoints
placed on the fake cluster, and a sentinel built on them. A module (imported), not fixtures."""

from __future__ import annotations

import json
import re
import threading
import uuid as uuidlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from runtime.checkpoints.naming import describe, snapname_for
from runtime.sentinel.alerts import Alert, Alerter
from runtime.sentinel.service import Policy, Sentinel
from runtime.sentinel.store import SentinelStore
from tests.support.hubenv import HUB_VMID, fake_pve_client

ROLLBACK = re.compile(r"/snapshot/([^/]+)/rollback$")
START = re.compile(r"/status/start$")


class FakeClock:
    """The sentinel's clock and sleep: a gate's wait costs no real time."""

    def __init__(self, start: datetime | None = None) -> None:
        self.now = start or datetime(2026, 11, 28, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class FakeHub:
    """The Hub's ``/readyz``, decided from what happened on the fake cluster (its request log):
    no answer while the VM is not running; after a rollback, healthy iff that snapshot is in
    ``good``; after a start (rung 1) with no rollback since, healthy iff ``restart_heals``;
    before anything, ``initial``. ``frozen`` answers critical whatever happened."""

    pve: Any
    good: set[str] = field(default_factory=set[str])
    restart_heals: bool = False
    initial: str = "critical"
    frozen: bool = False
    hang: bool = False
    seen: int = 0
    mark: int = 0  # request-log index before which actions do not count

    def verdict(self) -> str | None:
        vm = self.pve.vm(HUB_VMID)
        if self.hang or vm.status != "running" or vm.qmpstatus not in ("running", None):
            return None
        if self.frozen:
            return "critical"
        for method, path, _body in reversed(self.pve.requests[self.mark :]):
            if method != "POST":
                continue
            found = ROLLBACK.search(path)
            if found:
                return "healthy" if found.group(1) in self.good else "critical"
            if START.search(path):
                return "healthy" if self.restart_heals else "critical"
        return self.initial

    def arm(self) -> None:
        """Count only what happens from now on (the Hub broke now)."""
        self.mark = len(self.pve.requests)


@contextmanager
def serve_hub(hub: FakeHub) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hub.seen += 1
            verdict = hub.verdict()
            if verdict is None:
                self.close_connection = True
                return  # no answer at all: the connection closes without a response
            body = json.dumps({"status": verdict}).encode()
            self.send_response(503 if verdict == "critical" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def add_checkpoint(
    pve: Any,
    created: datetime,
    *,
    blessed: bool = False,
    vmstate: bool = False,
    kind: str = "scheduled",
    reason: str | None = None,
    vmid: int = HUB_VMID,
) -> str:
    """One of the Hub's checkpoints, as the checkpoint service leaves it on Proxmox."""
    uuid = str(uuidlib.uuid4())
    name = snapname_for(uuid)
    vm = pve.vm(vmid)
    snap = {k: v for k, v in vm.config.items() if k not in ("lock", "description", "parent", "digest")}
    snap.update(
        snaptime=int(created.timestamp()),
        description=describe(
            uuid=uuid,
            kind=kind,
            created_at=created,
            reason=reason,
            blessed_at=created + timedelta(hours=1) if blessed else None,
        ),
    )
    if vmstate:
        snap["vmstate"] = f"local-lvm:vm-{vmid}-state-{name}"
    vm.snapshots[name] = snap
    return name


class Alerts:
    """Alerts as delivered: the list the test reads."""

    def __init__(self) -> None:
        self.sent: list[Alert] = []
        self.lock = threading.Lock()

    def deliver(self, alert: Alert) -> bool:
        with self.lock:
            self.sent.append(alert)
        return True


def make_sentinel(
    pve: Any,
    cafile: str,
    db_path: Path,
    hub_url: str,
    clock: FakeClock,
    *,
    alerter: Alerter | None = None,
    token: tuple[str, str] | None = None,
    **policy: Any,
) -> Sentinel:
    options: dict[str, Any] = {"transient_retry_seconds": 0.5, "locked_retry_seconds": 0.5}
    if token is not None:
        from hubcore.proxmox import ProxmoxClient

        user, _, name = token[0].partition("!")
        client = ProxmoxClient(
            base_url=pve.url,
            token_user=user,
            token_name=name,
            token_secret=token[1],
            verify=cafile,
            **options,
        )
    else:
        client = fake_pve_client(pve, cafile, **options)
    values: dict[str, Any] = {
        "gate_timeout": 30.0,
        "probe_interval": 5.0,
        "probe_timeout": 2.0,
        "critical_probes": 3,
        "task_timeout": 30.0,
    }
    values.update(policy)
    return Sentinel(
        vmid=HUB_VMID,
        policy=Policy(hub_url=hub_url, **values),
        store=SentinelStore.open(f"sqlite:///{db_path}"),
        proxmox=client,
        alerter=alerter or Alerter(None),
        clock=clock,
        sleep=clock.sleep,
    )


def hub_requests(pve: Any, since: int = 0) -> list[tuple[str, str]]:
    """(method, path) of every request since index ``since``."""
    return [(m, p) for m, p, _b in pve.requests[since:]]


def changes(pve: Any, since: int = 0) -> list[tuple[str, str]]:
    """Requests that change something (anything but GET)."""
    return [(m, p) for m, p in hub_requests(pve, since) if m != "GET"]
