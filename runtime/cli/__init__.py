"""``hubctl``: the operator's command line (typer).

Exit codes (interfaces.md): 0 done; 1 the operation failed; 2 bad usage, input or settings. An
expected failure prints one line, never a traceback.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from runtime.checkpoints.service import CheckpointError
from runtime.cli import checkpoint, output
from runtime.cli.common import JsonOption, hub_from_settings
from runtime.cli.promote import promote
from runtime.errors import HubError, UsageError
from runtime.settings import load_settings

app = typer.Typer(
    name="hubctl",
    help="Hub: a self-managing orchestrator for Proxmox VE.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
db_app = typer.Typer(help="Database schema (Alembic migrations).", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(checkpoint.app, name="checkpoint")


@db_app.command("upgrade")
def db_upgrade(json_output: JsonOption = False) -> None:
    """Apply pending migrations. Idempotent."""
    output.set_json(json_output)
    hub = hub_from_settings()
    before, after = hub.db.upgrade()
    output.emit(
        {"from": before, "to": after, "changed": before != after},
        f"database at revision {after}" + ("" if before != after else " (already up to date)"),
    )


@db_app.command("current")
def db_current(json_output: JsonOption = False) -> None:
    """Show the schema revision of the database and of the code."""
    output.set_json(json_output)
    hub = hub_from_settings()
    current, head = hub.db.current_revision(), hub.db.head_revision()
    output.emit(
        {"current": current, "head": head, "up_to_date": current == head},
        f"database {current or '(empty)'}; code {head}",
    )


@app.command()
def reconcile(
    vmid: checkpoint.VmidOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make the database and Proxmox agree about the VM's checkpoints; report what changed."""
    output.set_json(json_output)
    report = hub_from_settings().reconciler.run(vmid=vmid).to_public()
    lines = [f"reconciled VM {report['vm_id']}: {len(report['changes'])} change(s)"]
    lines += [f"  {c['uuid']}: {c['action']} ({c['why']})" for c in report["changes"]]
    if report["in_progress"]:
        lines.append(f"  still in progress on Proxmox: {', '.join(report['in_progress'])}")
    lines.append(f"  foreign snapshots left alone: {report['foreign_snapshots_ignored']}")
    output.emit(report, "\n".join(lines))


@app.command()
def health(json_output: JsonOption = False) -> None:
    """Health of the Hub: exit 0 when healthy or degraded, 1 when critical."""
    from runtime.health import evaluate

    output.set_json(json_output)
    doc = evaluate(hub_from_settings())
    lines = [f"{doc['status']}"] + [f"  {c['status']:<9} {c['name']}: {c['detail']}" for c in doc["checks"]]
    output.emit(doc, "\n".join(lines))
    if doc["status"] == "critical":
        raise typer.Exit(1)


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", min=1, max=65535)] = 8080,
) -> None:
    """Run the Hub service: HTTP API, job workers, scheduler and health loop (Ctrl-C/SIGTERM stops)."""
    from runtime.service import serve as run_service

    settings = load_settings()
    run_service(settings, host=host, port=port, say=lambda m: output.errors.print(f"hub: {m}", markup=False))


token_app = typer.Typer(help="API bearer tokens.", no_args_is_help=True)
app.add_typer(token_app, name="token")


@token_app.command("create")
def token_create(
    name: Annotated[str | None, typer.Option("--name", help="A name to recognise and revoke it by.")] = None,
    json_output: JsonOption = False,
) -> None:
    """Create an API token; it is shown once and stored only as a hash."""
    from runtime.api.tokens import TokenStore

    output.set_json(json_output)
    created = TokenStore(hub_from_settings().ready_db()).create(name=name, actor="hubctl")
    output.emit(created, f"token {created['name']}: {created['token']}\n(shown once; store it now)")


@token_app.command("list")
def token_list(json_output: JsonOption = False) -> None:
    """API tokens (names and dates, never the secrets)."""
    from runtime.api.tokens import TokenStore

    output.set_json(json_output)
    tokens = TokenStore(hub_from_settings().ready_db()).list()
    lines = [
        f"{t['name']:<24} created {t['created_at']}  "
        + (f"revoked {t['revoked_at']}" if t["revoked_at"] else f"last used {t['last_used_at'] or 'never'}")
        for t in tokens
    ]
    output.emit({"tokens": tokens}, "\n".join(lines) or "no tokens")


@token_app.command("revoke")
def token_revoke(
    name: Annotated[str, typer.Argument(help="Token name.")], json_output: JsonOption = False
) -> None:
    """Revoke a token: every later request with it gets 401."""
    from runtime.api.tokens import TokenStore

    output.set_json(json_output)
    revoked = TokenStore(hub_from_settings().ready_db()).revoke(name=name, actor="hubctl")
    output.emit(revoked, f"token {revoked['name']} revoked at {revoked['revoked_at']}")


@app.command()
def lab(
    once: Annotated[bool, typer.Option("--once", help="Run the scripted walk-through, then exit.")] = False,
    state_dir: Annotated[Path, typer.Option("--state-dir", help="Where the lab keeps its state.")] = Path(
        ".hub-lab"
    ),
) -> None:
    """The whole Hub on this machine against a local Proxmox simulator (SQLite, in-process jobs)."""
    from runtime.lab.walkthrough import run as run_lab

    code = run_lab(once=once, root=state_dir.resolve(), console=output.console)
    if code:
        raise typer.Exit(code)


app.command("promote", help="Promote stack settings from one Pulumi stack to another (dev -> prod).")(promote)


def main(argv: list[str] | None = None) -> None:
    sys.exit(run(argv))


def run(argv: list[str] | None = None) -> int:
    try:
        result: Any = app(args=argv, prog_name="hubctl", standalone_mode=False)
    except typer.TyperException as exc:  # typer's usage errors carry exit_code 2
        output.fail(exc.format_message())
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
        output.fail(str(exc), extra={"checkpoint": exc.checkpoint})
        return 1
    except HubError as exc:
        output.fail(str(exc))
        return 1
    except KeyboardInterrupt:
        output.fail("interrupted")
        return 130
    return result if isinstance(result, int) else 0
