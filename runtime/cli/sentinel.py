"""``hubctl sentinel ...``: watch the Hub from outside its VM and walk the recovery ladder."""

from __future__ import annotations

import signal
import threading
from typing import TYPE_CHECKING, Annotated, Any

import typer

from runtime.cli import output, process
from runtime.cli.common import JsonOption, examples, progress_printer

if TYPE_CHECKING:
    from runtime.sentinel.service import Outcome, Sentinel

app = typer.Typer(
    help="The sentinel: watch the Hub from outside its VM and recover it through Proxmox.",
    no_args_is_help=True,
    epilog=examples(
        "hubctl sentinel watch --hub-url https://hub.example:8443",
        "hubctl sentinel recover --hub-url https://hub.example:8443 --dry-run",
        "hubctl sentinel status",
        "hubctl sentinel reset",
        "hubctl sentinel rollback --to hub-3f2a... --yes",
    ),
)
HubUrl = Annotated[
    str | None,
    typer.Option(
        "--hub-url",
        metavar="URL",
        help="The Hub's base URL; it GETs URL/readyz (default HUB_SENTINEL_HUB_URL).",
    ),
]
GateTimeout = Annotated[
    float | None,
    typer.Option(
        "--gate-timeout",
        min=0.1,
        metavar="S",
        help="A rung's health gate (default HUB_SENTINEL_GATE_TIMEOUT_SECONDS).",
    ),
]
ProbeInterval = Annotated[
    float | None,
    typer.Option(
        "--probe-interval",
        min=0.1,
        metavar="S",
        help="Seconds between probes (default HUB_SENTINEL_PROBE_INTERVAL_SECONDS).",
    ),
]
DryRun = Annotated[
    bool,
    typer.Option("--dry-run", help="Print the ladder and the checkpoints it would pick; change nothing."),
]


_CONFIRM = "Roll the Hub VM back to {to}? Everything since is set aside in an emergency snapshot."


def _sentinel(hub_url: str | None, *, json_output: bool, need_url: bool = True, **overrides: Any) -> Sentinel:
    from runtime.errors import UsageError
    from runtime.sentinel.build import build_sentinel
    from runtime.settings import load_settings

    settings = load_settings()
    url = hub_url or settings.sentinel_hub_url
    if url is None:
        if need_url:
            raise UsageError("--hub-url: required (or set HUB_SENTINEL_HUB_URL)")
        url = "http://127.0.0.1"  # status and reset probe nothing
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--hub-url {url!r}: expected http://host[:port] or https://...")
    return build_sentinel(settings, hub_url=url, progress=progress_printer(json_output), **overrides)


def _outcome_text(outcome: Outcome) -> str:
    lines = [f"{outcome.result}: {outcome.detail}"]
    for step in outcome.steps:
        mark = (
            f" [{step.status.value}{', ' + step.outcome if step.outcome else ''}]"
            if outcome.result != "dry-run"
            else ""
        )
        lines.append(f"  {step.describe()}{mark}")
    return "\n".join(lines)


@app.command()
def watch(
    hub_url: HubUrl = None,
    gate_timeout: GateTimeout = None,
    probe_interval: ProbeInterval = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", min=1, max=65535, help="Serve /metrics on 127.0.0.1:PORT.")
    ] = None,
) -> None:
    """Probe the Hub every few seconds; run the ladder when it is critical (K probes, hung, or stopped)."""
    process.long_running()
    from runtime.errors import HubError

    sentinel = _sentinel(hub_url, json_output=False, gate_timeout=gate_timeout, probe_interval=probe_interval)
    if metrics_port is not None:
        from prometheus_client import start_http_server

        from runtime.sentinel.metrics import REGISTRY

        start_http_server(metrics_port, addr="127.0.0.1", registry=REGISTRY)
    stop = threading.Event()

    def stopping(_signum: int, _frame: object) -> None:
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stopping)
    output.console.print(
        f"sentinel {sentinel.holder} watching VM {sentinel.vmid} at {sentinel.policy.hub_url}", markup=False
    )
    try:
        while not stop.is_set():
            try:
                outcome = sentinel.tick()
            except HubError as exc:
                # One bad probe (the database briefly locked, Proxmox gone mid-step) is logged; the
                # next tick resumes from what was persisted.
                output.errors.print(f"hubctl: sentinel: {exc}", markup=False)
                outcome = None
            if outcome is not None:
                output.console.print(_outcome_text(outcome), markup=False)
            stop.wait(sentinel.policy.probe_interval)
    finally:
        sentinel.alerter.close()
        sentinel.store.close()


@app.command()
def recover(
    hub_url: HubUrl = None,
    gate_timeout: GateTimeout = None,
    dry_run: DryRun = False,
    json_output: JsonOption = False,
) -> None:
    """Run the ladder once now if the Hub is critical: exit 0 healthy (or already was), 1 otherwise."""
    output.set_json(json_output)
    sentinel = _sentinel(hub_url, json_output=json_output, gate_timeout=gate_timeout)
    try:
        outcome = sentinel.recover(trigger="operator", dry_run=dry_run)
    finally:
        sentinel.alerter.close()
        sentinel.store.close()
    output.emit(outcome.to_public(), _outcome_text(outcome))
    if outcome.result not in ("healthy", "nothing", "dry-run"):
        raise typer.Exit(1)


@app.command()
def status(
    json_output: JsonOption = False,
) -> None:
    """The sentinel's state, recent runs, quarantined checkpoints, journal and the lease on Proxmox."""
    output.set_json(json_output)
    sentinel = _sentinel(None, json_output=json_output, need_url=False)
    try:
        doc = sentinel.status()
    finally:
        sentinel.store.close()
    lines = [f"state: {doc['state']} since {doc['since']} {doc['detail']}".rstrip()]
    if doc["lease"]:
        lines.append(f"lease: {doc['lease']['holder']} until {doc['lease']['expires']}")
    for q in doc["quarantined"]:
        lines.append(f"quarantined: {q['snapname']} ({q['reason']})")
    for e in doc["events"]:
        lines.append(f"{e['at']}  {e['kind']}  {e['outcome']}  {e['checkpoint'] or '-'}  {e['detail']}")
    output.emit(doc, "\n".join(lines))


@app.command()
def reset(
    json_output: JsonOption = False,
) -> None:
    """A person's word that the Hub may be acted on again after `error` (clears the error mark)."""
    output.set_json(json_output)
    sentinel = _sentinel(None, json_output=json_output, need_url=False)
    try:
        sentinel.reset()
        doc = {"state": sentinel.store.hub(sentinel.vmid, sentinel.clock()).state.value}
    finally:
        sentinel.store.close()
    output.emit(doc, f"state: {doc['state']}")


@app.command()
def rollback(
    to: Annotated[
        str, typer.Option("--to", metavar="UUID|SNAPNAME", help="The Hub checkpoint to roll back to.")
    ],
    hub_url: HubUrl = None,
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask for confirmation.")] = False,
    gate_timeout: GateTimeout = None,
    dry_run: DryRun = False,
    json_output: JsonOption = False,
) -> None:
    """Roll the Hub back by hand, the sentinel's way: pre-recovery snapshot, rollback, gate, journal."""
    output.set_json(json_output)
    if not yes and not dry_run and (json_output or not typer.confirm(_CONFIRM.format(to=to))):
        from runtime.errors import UsageError

        raise UsageError("not confirmed: add --yes")
    sentinel = _sentinel(hub_url, json_output=json_output, gate_timeout=gate_timeout)
    try:
        outcome = sentinel.rollback(to, dry_run=dry_run)
    finally:
        sentinel.alerter.close()
        sentinel.store.close()
    output.emit(outcome.to_public(), _outcome_text(outcome))
    if outcome.result not in ("healthy", "dry-run"):
        raise typer.Exit(1)
