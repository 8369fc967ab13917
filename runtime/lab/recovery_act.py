"""The lab's recovery act: the Hub is broken on purpose, the sentinel notices and walks the ladder
visibly (each rung, gate and quarantine), the Hub ends healthy, and the restored Hub shows the journal.

The Hub's ``/readyz`` here is a small local endpoint the act controls: "healthy" only once the Hub
VM runs from the checkpoint the act chose as good (PVE records the snapshot a VM was last rolled
back to, or snapshotted at, as its config's ``parent``), "critical" otherwise. So the restart and the
newest checkpoint fail their gates, as a bad upgrade captured in the newest checkpoint would.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.lab.walkthrough import Lab


def recovery_act(lab: Lab) -> None:
    from rich.markup import escape

    from runtime.sentinel.alerts import Alerter
    from runtime.sentinel.hub_import import import_recovery_journal, recovery_events
    from runtime.sentinel.service import Policy, Sentinel
    from runtime.sentinel.store import SentinelStore

    services = lab.services
    assert services is not None
    lab.step("7. recovery: the Hub breaks; the sentinel walks the ladder from outside")
    vmid = services.settings.hub_vmid()
    ref = services.vms.locate(vmid)
    sentinel_store = SentinelStore.open(f"sqlite:///{lab.root / 'sentinel.db'}")
    probe_hub = Sentinel(
        vmid=vmid,
        policy=Policy(hub_url="http://127.0.0.1"),
        store=sentinel_store,
        proxmox=services.proxmox,
        alerter=Alerter(None),
    )
    candidates = probe_hub.hub.candidates(ref)
    if len(candidates) < 2:
        lab.console.print("   [yellow]fewer than two checkpoints: the recovery act needs two; skipped[/]")
        return
    good = candidates[1].snapname
    lab.console.print(
        f"   the newest checkpoint {candidates[0].snapname} holds the fault; {good} is good", markup=False
    )

    def verdict() -> str:
        status = services.proxmox.vm_status(ref)
        parent = services.proxmox.vm_config(ref).get("parent")
        return "healthy" if status.status == "running" and parent == good else "critical"

    class Readyz(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            answer = verdict()
            body = json.dumps({"status": answer}).encode()
            self.send_response(503 if answer == "critical" else 200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Readyz)
    threading.Thread(target=server.serve_forever, name="lab-readyz", daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        sentinel = Sentinel(
            vmid=vmid,
            policy=Policy(
                hub_url=url, gate_timeout=3.0, probe_interval=0.3, critical_probes=2, task_timeout=120
            ),
            store=sentinel_store,
            proxmox=services.proxmox,
            alerter=Alerter(None),
            progress=lambda line: lab.console.print(f"   · {line}", markup=False),
        )
        lab.console.print(f"   the Hub's /readyz at {url} answers: {verdict()}", markup=False)
        outcome = None
        for probe in range(1, 10):
            outcome = sentinel.tick()
            if outcome is not None:
                break
            lab.console.print(
                f"   · probe {probe}: critical ({sentinel.critical_streak}/2 before acting)", markup=False
            )
        if outcome is None or outcome.result != "healthy":
            lab.console.print(f"   [red]the ladder ended {outcome.result if outcome else 'not at all'}[/]")
            return
        lab.console.print(f"[green]✓[/] {escape(outcome.detail)}")
        for name, reason in sentinel.store.quarantined(vmid).items():
            lab.console.print(f"   quarantined: {name} ({reason})", markup=False)
        imported = import_recovery_journal(services)
        lab.console.print(
            f"   the Hub imported {imported} journal event(s) from the VM's notes (hubctl recovery list):"
        )
        for event in recovery_events(services.ready_db()):
            lab.console.print(
                f"   {event['at']}  {event['kind']:<18} {event['outcome']:<12} {event['detail']}",
                markup=False,
            )
    finally:
        server.shutdown()
        server.server_close()
        sentinel_store.close()
