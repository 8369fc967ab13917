"""``hubctl``: the operator's command line (typer).

Exit codes (interfaces.md): 0 done; 1 the operation failed; 2 bad usage, input or settings. An
expected failure prints one line, never a traceback.

This module is what every ``hubctl`` call imports, so it stays small: sub-apps (``db``, ``token``
and every domain's, from ``runtime.domains``) are loaded only when named (see lazy.py), and each
command imports what it needs inside its body. ``main`` runs short commands without the cyclic
collector and ends them without the interpreter's teardown; a command that stays up (or starts
threads it must see finish) calls ``process.long_running()`` first (see process.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime import domains
from runtime.cli import output, process
from runtime.cli.common import JsonOption, VmidOption, examples, services_from_settings
from runtime.cli.lazy import LazyGroup
from runtime.errors import HubError, UsageError

CORE_COMMANDS = (
    domains.Command("db", "runtime.cli.db:app", "Database schema (Alembic migrations)."),
    domains.Command("token", "runtime.cli.token:app", "API bearer tokens."),
    domains.Command("jobs", "runtime.cli.jobs:app", "Jobs run by the service (API requests, schedules)."),
    domains.Command("audit", "runtime.cli.audit:app", "The append-only audit trail of every Hub action."),
    domains.Command(
        "promote", "runtime.cli.promote:app", "Promote stack settings from one Pulumi stack to another."
    ),
)
LazyGroup.lazy = {c.name: c for c in (*CORE_COMMANDS, *domains.commands())}

app = typer.Typer(
    name="hubctl",
    cls=LazyGroup,
    help="Hub: a self-managing orchestrator for Proxmox VE.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=True,  # --install-completion/--show-completion: typer's, cheap (no import at --help)
    epilog=examples(
        "hubctl lab           # the whole Hub here, against a simulator",
        "hubctl health",
        "hubctl checkpoint create --reason 'before upgrade'",
        "hubctl checkpoint list",
        "hubctl jobs show 1a2b --follow",
        "hubctl COMMAND --help",
    ),
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            found = version("hub")
        except PackageNotFoundError:  # run from a source tree that was never installed
            found = "unknown (not installed)"
        sys.stdout.write(f"hubctl {found}\n")
        raise typer.Exit(0)


@app.callback()
def _root(
    _show_version: Annotated[
        bool,
        typer.Option(
            "--version", is_eager=True, callback=_version, help="Print the version of hubctl and exit."
        ),
    ] = False,
) -> None:
    """Hub: a self-managing orchestrator for Proxmox VE."""


@app.command(epilog=examples("hubctl reconcile", "hubctl reconcile --all --json"))
def reconcile(
    vmid: VmidOption = None,
    all_vms: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every VM the Hub owns (its own, its machines tagged hub-machine in HUB_POOL) and every"
            " VM it has checkpoints of, in this one process.",
        ),
    ] = False,
    json_output: JsonOption = False,
) -> None:
    """Make the database and Proxmox agree about the VM's checkpoints; report what changed."""
    from runtime.checkpoints.reconcile import Reconciler

    output.set_json(json_output)
    if all_vms and vmid is not None:
        raise UsageError("--all and --vmid: give one or the other")
    services = services_from_settings()
    if not all_vms:
        report = Reconciler.build(services, actor="hubctl").run(vmid=vmid).to_public()
        output.emit(report, "\n".join(_report_lines(report)))
        return
    from runtime.fleet.reconcile import reconcile_owned

    done = reconcile_owned(services, actor="hubctl")
    reports, failed = done.reports, done.failed
    lines = [line for r in reports for line in _report_lines(r.to_public()) if r.changes or r.unsettled]
    changes = sum(len(r.changes) for r in reports)
    lines.append(f"reconciled {len(reports)} of {len(done.vmids)} VM(s): {changes} change(s)")
    lines += [f"  VM {f['vm_id']}: {f['error']}" for f in failed]
    output.emit(done.to_public(), "\n".join(lines))
    if failed and not reports:
        raise typer.Exit(1)  # nothing could be done (each failure is said above)


def _report_lines(report: dict[str, Any]) -> list[str]:
    lines = [f"reconciled VM {report['vm_id']}: {len(report['changes'])} change(s)"]
    lines += [f"  {c['uuid']}: {c['action']} ({c['why']})" for c in report["changes"]]
    if report["in_progress"]:
        lines.append(f"  still in progress on Proxmox: {', '.join(report['in_progress'])}")
    lines += [f"  left for the next run: {u['uuid']}: {u['why']}" for u in report["unsettled"]]
    lines.append(f"  foreign snapshots left alone: {report['foreign_snapshots_ignored']}")
    return lines


@app.command(epilog=examples("hubctl health", "hubctl health --json | jq .status"))
def health(json_output: JsonOption = False) -> None:
    """Health of the Hub, evaluated now: exit 0 when healthy or degraded, 1 when critical.

    Also shows the service's settled verdict (after hysteresis) when its health loop runs."""
    from runtime.health.loop import one_shot

    output.set_json(json_output)
    doc = one_shot(services_from_settings())
    lines = [f"{doc['status']}"] + [f"  {c['status']:<9} {c['name']}: {c['detail']}" for c in doc["checks"]]
    if doc["settled"] is not None:
        lines.append(f"service's settled verdict: {doc['settled']['status']} since {doc['settled']['since']}")
    output.emit(doc, "\n".join(lines))
    if doc["status"] == "critical":
        raise typer.Exit(1)


@app.command(epilog=examples("hubctl serve --host 0.0.0.0 --port 8080", "hubctl serve --api-processes 4"))
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
    api_processes: Annotated[
        int | None,
        typer.Option(
            "--api-processes",
            min=1,
            max=256,
            help="API processes sharing the socket (default HUB_API_PROCESSES, else one per CPU with "
            "Redis, 1 without).",
        ),
    ] = None,
    socket_fd: Annotated[int | None, typer.Option("--socket-fd", hidden=True, min=0)] = None,
) -> None:
    """Run the Hub service: HTTP API, job workers, scheduler and health loop (Ctrl-C/SIGTERM stops)."""
    process.long_running()
    from runtime.serve import serve as run_service
    from runtime.settings import load_settings

    settings = load_settings()
    if api_processes is not None:
        settings = settings.model_copy(update={"api_processes": api_processes})
    run_service(
        settings,
        host=host,
        port=port,
        socket_fd=socket_fd,
        say=lambda m: output.errors.print(f"hub: {m}", markup=False),
    )


@app.command(epilog=examples("hubctl worker", "hubctl worker --threads 4"))
def worker(
    threads: Annotated[
        int | None,
        typer.Option("--threads", min=1, max=32, help="Job threads (default HUB_WORKER_THREADS, else 2)."),
    ] = None,
    alive_file: Annotated[
        Path | None,
        typer.Option("--alive-file", help="Touched at every heartbeat written (for a health check)."),
    ] = None,
) -> None:
    """Run job workers only, on the shared Redis broker (needs HUB_REDIS_URL; SIGTERM stops gracefully)."""
    process.long_running()
    from runtime.settings import load_settings
    from runtime.worker import run_worker

    code = run_worker(
        load_settings(),
        threads=threads,
        alive_file=alive_file,
        say=lambda m: output.errors.print(f"hub: {m}", markup=False),
    )
    if code:
        raise typer.Exit(code)


@app.command(epilog=examples("hubctl lab", "hubctl lab --once", "hubctl lab --port 8006 --api-port 8080"))
def lab(
    once: Annotated[bool, typer.Option("--once", help="Run the scripted walk-through, then exit.")] = False,
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Where the lab keeps its state.")] = Path(
        ".hub-lab"
    ),
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port of the Proxmox simulator (0: any free one).")
    ] = 0,
    api_port: Annotated[
        int, typer.Option("--api-port", min=0, max=65535, help="Port of the Hub API (0: any free one).")
    ] = 0,
) -> None:
    """The whole Hub on this machine against a local Proxmox simulator (SQLite, in-process jobs)."""
    process.long_running()
    from runtime.lab.walkthrough import run as run_lab

    code = run_lab(once=once, root=state_dir.resolve(), console=output.console, port=port, api_port=api_port)
    if code:
        raise typer.Exit(code)


def main(argv: list[str] | None = None) -> None:
    """The ``hubctl`` entry point: ``run`` inside a process that starts and ends cheaply (process.py)."""
    process.start()
    process.end(run(argv))


def run(argv: list[str] | None = None) -> int:
    from runtime.checkpoints.errors import CheckpointError

    if "_HUBCTL_COMPLETE" in os.environ:  # the shell asks for completions (see README)
        from typer._completion_classes import completion_init  # pyright: ignore[reportPrivateUsage]

        completion_init()

    try:
        result: Any = app(args=argv, prog_name="hubctl", standalone_mode=False)
    except typer.TyperException as exc:  # typer's usage errors carry exit_code 2
        message = exc.format_message()
        if not message.strip():  # no command given: the help it printed is the whole answer
            return 0
        output.fail(message)
        return exc.exit_code
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        output.fail("aborted")
        return 1
    except UsageError as exc:
        output.fail(str(exc))
        return 2
    except CheckpointError as exc:
        output.fail(str(exc), extra={"checkpoint": exc.checkpoint.to_public()})
        return 1
    except HubError as exc:
        output.fail(str(exc))
        return 1
    except KeyboardInterrupt:
        output.fail("interrupted")
        return 130
    return result if isinstance(result, int) else 0
